package BenchProc;
use strict;
use warnings;
use POSIX ();
use Exporter 'import';
our @EXPORT_OK = qw(group_procs group_cpu_seconds);

# The processes of a process group (a server started in its own group: its master
# and workers), from /proc, as [pid, utime + stime in clock ticks]
my $HZ = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;

sub group_procs {
  my ($pgid) = @_;
  my @pids;
  for my $stat (glob '/proc/[0-9]*/stat') {
    open my $fh, '<', $stat or next;
    my $line = <$fh> // next;
    my @f = split ' ', substr($line, rindex($line, ')') + 2);    # from field 3 (state)
    push @pids, [($stat =~ m{/proc/(\d+)/})[0], $f[11] + $f[12]] if $f[2] == $pgid;
  }
  return @pids;
}

# utime + stime of the group's live processes, seconds
sub group_cpu_seconds {
  my ($pgid) = @_;
  my $ticks = 0;
  $ticks += $_->[1] for group_procs($pgid);
  return $ticks / $HZ;
}

1;
