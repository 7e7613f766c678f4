package PAGI::Server::Process;
use strict;
use warnings;
use experimental 'signatures';
use POSIX ();
use Scalar::Util qw(weaken);
use PAGI::Server::Handoff;
use PAGI::Server::Loop;

our $VERSION = '0.001';

# What a server does to the process it runs in: its pid file, the open-file limit,
# the switch to another user and group, signals handled from the loop, the USR2
# upgrade of a single process, and telling systemd (and the server it replaces)
# that it serves. It owns that state; the server calls it. log: sub ($level, $msg).
sub new ($class, %arg) { bless {%arg, signals_queued => []}, $class }

sub _log ($self, $level, $msg) { $self->{log}->($level, $msg) }

# ---- the pid file ------------------------------------------------------------------

# Written once the sockets are bound (before privileges are dropped; then given to
# the user, so that the new server of a USR2 upgrade can write it), by that new
# server once it serves, and removed at exit only while it names this process
sub write_pid_file ($self, $file) {
  my $tmp = "$file.$$.tmp";
  # Replaced whole where the directory allows it, else written in place
  if (open(my $fh, '>', $tmp)) {
    print {$fh} "$$\n";
    close $fh && rename($tmp, $file) and return $self->{pid_written} = $file;
    unlink $tmp;
  }
  open(my $fh, '>', $file) or die "PAGI::Server: cannot write the pid file $file: $!\n";
  print {$fh} "$$\n";
  close $fh or die "PAGI::Server: cannot write the pid file $file: $!\n";
  $self->{pid_written} = $file;
}

sub remove_pid_file ($self) {
  my $file = delete $self->{pid_written} or return;
  open(my $fh, '<', $file) or return;
  my $pid = <$fh> // '';
  close $fh;
  return unless $pid =~ /\A([0-9]+)\n?\z/ && $1 == $$;
  unlink $file or $self->_log(debug => "cannot remove the pid file $file: $!");
}

# ---- the open-file limit -----------------------------------------------------------

# Raised to the hard limit at start (as nginx does): each connection is a descriptor
sub raise_nofile ($self) {
  if (!eval { require BSD::Resource; 1 }) {
    return $self->_log(debug => 'BSD::Resource is not installed (Debian: libbsd-resource-perl): '
      . 'the open-file limit is left as it is');
  }
  my $NOFILE = BSD::Resource::RLIMIT_NOFILE();
  my ($soft, $hard) = BSD::Resource::getrlimit($NOFILE);
  return unless defined $soft;
  my $inf = BSD::Resource::RLIM_INFINITY();
  if ($soft == $hard || $soft == $inf) { return $self->_log(debug => "open-file limit: $soft (the hard limit)") }
  my $want = $hard;
  if ($hard == $inf) {
    # Linux refuses an infinite limit of files: its ceiling is fs.nr_open
    my $max = 0;
    if (open(my $fh, '<', '/proc/sys/fs/nr_open')) { $max = $1 if (<$fh> // '') =~ /([0-9]+)/ }
    return $self->_log(debug => "open-file limit: $soft (the hard limit is unlimited)") unless $max > $soft;
    $want = $max;
  }
  if (BSD::Resource::setrlimit($NOFILE, $want, $hard)) {
    $self->_log(debug => "open-file limit raised from $soft to $want (the hard limit)");
  }
  else { $self->_log(debug => "open-file limit: $soft; cannot raise it to $want: $!") }
}

# ---- user and group ----------------------------------------------------------------

# Once the sockets are bound (a port below 1024 needs root), the process (and with
# workers, every worker) runs as $user/$group: real, effective and saved ids, and the
# user's supplementary groups instead of root's. A process that already runs as them
# (the new server of a USR2 upgrade, started by one that dropped them) goes on.
# $loop_type: the loop to load while root can still read every directory of @INC.
sub drop_privileges ($self, $user, $group, $loop_type) {
  my ($uid, $gid, $name);
  if (defined $user) {
    ($name, $uid, $gid) = (getpwnam $user)[0, 2, 3];
    die "PAGI::Server: no such user '$user'\n" unless defined $uid;
  }
  if (defined $group) {
    $gid = getgrnam $group;
    die "PAGI::Server: no such group '$group'\n" unless defined $gid;
  }
  my $as = join(':', grep { defined } $user, $group);
  if ($> != 0) {
    my $already = (!defined $uid || $< == $uid && $> == $uid)
      && (!defined $gid || (split ' ', $()[0] == $gid && (split ' ', $))[0] == $gid);
    die "PAGI::Server: user/group need root to switch to\n" unless $already;
    return $self->_log(debug => "already running as $as");
  }
  # What the loops and the server load on first use, loaded while root can still read
  # every directory of @INC: the user may not be able to (a checkout only its owner
  # may enter, as mktemp makes them), and `require` dies on a directory it cannot search
  PAGI::Server::Loop::preload($loop_type);
  if (defined $gid) {
    # The user's own supplementary groups (as initgroups(3) gives them), none of root's
    my @groups = ($gid);
    if (defined $name) {
      while (my ($g, undef, $id, $members) = getgrent) {
        push @groups, $id if $id != $gid && grep { $_ eq $name } split ' ', $members;
      }
      endgrent;
    }
    $) = "$gid @groups";
    POSIX::setgid($gid) or die "PAGI::Server: cannot switch to group $gid: $!\n";
  }
  chown $uid // -1, $gid // -1, $self->{pid_written} if $self->{pid_written};
  if (defined $uid) {
    POSIX::setuid($uid) or die "PAGI::Server: cannot switch to user '$user': $!\n";
    die "PAGI::Server: still running as root after switching to '$user'\n"
      if ($> == 0 || $< == 0) && $uid != 0;
  }
  $self->_log(info => "running as $as");
}

# ---- signals -------------------------------------------------------------------------

# Runs $code->($signame) from the loop when one of the signals arrives, never inside
# whatever Perl code the signal interrupted. A plain %SIG handler queues the work and
# writes a byte to a pipe that the loop watches (queue): nothing is checked on a turn
# of the loop without a signal, unlike IO::Async's watch_signal, and it works on every
# loop, whether or not it runs IO::Async's `later` queue (IO::Async::Loop::Mojo does
# not). A loop whose wait runs in C never returns to Perl when a signal interrupts it,
# so a %SIG handler would only run at the next event: there (EV, which Mojo::IOLoop
# runs on when it is installed) the loop's own signal watchers catch the signal
# instead, and queue the work the same way.
sub on_signals ($self, $loop, $signals, $code) {
  $self->{loop} = $loop;
  my $ev = PAGI::Server::Loop::waits_in_ev($loop);
  for my $sig (@$signals) {
    if ($ev) { $self->{ev_signals}{$sig} = EV::signal($sig, sub { $self->queue($code, $sig) }) }
    else {
      $self->{saved_sig}{$sig} //= [$SIG{$sig}];
      $SIG{$sig} = sub { $self->queue($code, $sig) };
    }
  }
}

# Queues $code->($sig) to run from the loop (see on_signals): safe in a signal handler
sub queue ($self, $code, $sig) {
  push @{$self->{signals_queued}}, [$code, $sig];
  my $wake = $self->{signal_wake} //= do {
    pipe(my $r, my $w) or die "PAGI::Server: pipe: $!\n";
    $_->blocking(0) for $r, $w;
    $self->{signal_read} = $r;
    $self->{loop}->watch_io(handle => $r, on_read_ready => sub {
      1 while sysread($r, my $buf, 512);
      while (my $q = shift @{$self->{signals_queued}}) { $q->[0]->($q->[1]) }
    });
    $w;
  };
  syswrite($wake, '!');
}

# The signal handlers installed here are undone (the server left its loop)
sub forget_signals ($self) {
  delete $self->{ev_signals};
  my $saved = delete $self->{saved_sig} || {};
  $SIG{$_} = $saved->{$_}[0] // 'DEFAULT' for keys %$saved;
  if (my $w = delete $self->{signal_wake}) {
    $self->{loop}->unwatch_io(handle => delete $self->{signal_read}, on_read_ready => 1);
    close $w;
  }
  $self->{signals_queued} = [];
}

# ---- the USR2 upgrade of a single process ----------------------------------------------

# SIGUSR2 to a single process: the same command line is started again (new Perl code,
# modules and server code are loaded) with the listening sockets $fhs inherited; once
# it serves, $on_ready runs (the server retires as a worker does after max_requests).
# A new process that fails to start leaves this one serving. (With workers the master
# does the same: PAGI::Server::Prefork.)
sub upgrade ($self, $loop, $fhs, $on_ready) {
  return $self->_log(warn => "SIGUSR2 ignored: an upgrade is already under way (new process pid $self->{successor}{pid})")
    if $self->{successor};
  my ($pid, $r) = eval { PAGI::Server::Handoff::spawn_successor(@$fhs) };
  return $self->_log(error => 'SIGUSR2: cannot start a new server process: ' . ($@ =~ s/\s+\z//r)) unless $pid;
  $self->_log(info => "SIGUSR2 received: started a new server process (pid $pid) on the same sockets; "
    . 'this one serves until it is ready');
  my $succ = $self->{successor} = {pid => $pid, buf => ''};
  $r->blocking(0);
  $loop->watch_io(handle => $r, on_read_ready => sub {
    my $n = sysread($r, $succ->{buf}, 64, length $succ->{buf});
    return if !defined $n && ($!{EAGAIN} || $!{EINTR});
    if ($succ->{buf} =~ /\Aready\n/) {
      $loop->unwatch_io(handle => $r, on_read_ready => 1);
      close $r;
      $self->{handed_over} = 1;
      $self->_log(info => "the new server process (pid $pid) serves: this one (pid $$) retires");
      return $on_ready->();
    }
    return if $n;
    # Closed without "ready": it failed (its own log lines say why)
    $loop->unwatch_io(handle => $r, on_read_ready => 1);
    close $r;
    delete $self->{successor};
    $self->_reap_successor($loop, $pid, 50);
  });
}

# Has this process handed its sockets (and socket files) over to a new one?
sub handed_over ($self) { $self->{handed_over} ? 1 : 0 }

# Waits (without blocking the loop) for a failed new process to exit, and says how
sub _reap_successor ($self, $loop, $pid, $tries) {
  my $got = waitpid($pid, POSIX::WNOHANG());
  if ($got == $pid || $got < 0 || !$tries) {
    my $how = $got != $pid ? 'stopped' : $? & 127 ? 'was killed by signal ' . ($? & 127) : 'exited with status ' . ($? >> 8);
    return $self->_log(error => "upgrade failed: the new server process (pid $pid) $how before it served; "
      . "this one (pid $$) serves on");
  }
  weaken(my $weak = $self);
  $loop->watch_time(after => 0.1, code => sub { $weak->_reap_successor($loop, $pid, $tries - 1) if $weak });
}

# This process serves (a single process listens; a master's first workers are ready):
# systemd is told (Type=notify), and in an upgrade ($upgrade: the previous server's
# pipe and pid) the pid file is written and the previous server told to retire
sub serving ($self, $upgrade, $pid_file) {
  if ($upgrade) {
    $self->write_pid_file($pid_file) if defined $pid_file;
    my $err = PAGI::Server::Handoff::notify("MAINPID=$$\nREADY=1\n");
    $self->_log(warn => "sd_notify: $err") if $err;
    $self->_log(info => "upgrade: serving; the previous server (pid $upgrade->{old_pid}) retires");
    syswrite($upgrade->{ready}, "ready\n");
    close $upgrade->{ready};
    return;
  }
  my $err = PAGI::Server::Handoff::notify("READY=1\nMAINPID=$$\n");
  $self->_log(warn => "sd_notify: $err") if $err;
}

1;

=head1 NAME

PAGI::Server::Process - what a PAGI::Server does to its process

=head1 DESCRIPTION

Internal. The pid file (C<write_pid_file>, C<remove_pid_file>), the open-file limit
(C<raise_nofile>), the switch to another user and group (C<drop_privileges>),
signals handled from the loop on every loop type (C<on_signals>, C<queue>,
C<forget_signals>), the USR2 upgrade of a single process (C<upgrade>,
C<handed_over>) and telling systemd and the previous server that this one serves
(C<serving>).

=cut
