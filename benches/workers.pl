#!/usr/bin/env perl
# Requests per second of pagi-server with 0 (single process), 1 and 2 pre-forked
# workers on one scenario, measured with wrk on 127.0.0.1, and the scaling ratio
# (2 workers / 1 worker). A tool for people: nothing here asserts a time.
#
#   benches/workers.pl                       # hello, 5 s x 3 rounds per setting
#   benches/workers.pl --duration 10 --rounds 5 --workers 0,1,2,4 --conns 200
#   benches/workers.pl --app benches/apps/framework.pl --path /users/42 --backend pp
#
# wrk runs on the same machine (its own threads, --threads), so on a 2-core box the
# req/s ratio is bounded by the CPU the load generator takes. The table therefore also
# says what each side used: the server's CPU (utime + stime of its process group, from
# /proc) and wrk's (its rusage), in cores, and the server's CPU per request; the
# CPU-accounted scaling is what the server would do with every core to itself:
# N cores / (server CPU per request with N workers), against one core / (CPU per
# request of the single process).
use strict;
use warnings;
use experimental 'signatures';
use FindBin ();
use Getopt::Long;
use IO::Socket::IP;
use POSIX ();
use Time::HiRes ();
use lib "$FindBin::RealBin/lib";
use BenchProc qw(group_cpu_seconds);

my $root = "$FindBin::RealBin/..";
my %o = (duration => 5, rounds => 3, conns => 100, threads => 2, workers => '0,1,2',
  app => "$root/benches/apps/hello.pl", path => '/', backend => 'auto', warmup => 1);
GetOptions(\%o, 'duration=i', 'rounds=i', 'conns=i', 'threads=i', 'workers=s', 'app=s',
  'path=s', 'backend=s', 'warmup=i', 'help') or exit 2;
if ($o{help}) { system "sed -n 2,13p $0"; exit 0 }
system('wrk --version >/dev/null 2>&1') != -1 or die "workers.pl: needs wrk (apt-get install wrk)\n";

sub free_port {
  my $s = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0, Listen => 1) or die $!;
  return $s->sockport;
}

sub start_server ($n) {
  my $port = free_port();
  my $pid = fork // die "fork: $!";
  if (!$pid) {
    setpgrp(0, 0);    # its own process group: master and workers are counted together
    open(STDOUT, '>', '/dev/null');
    open(STDERR, '>', '/dev/null');
    { exec $^X, "$root/bin/pagi-server", '--backend', $o{backend}, '--no-access-log',
      '--log-level', 'warn', '--port', $port, ($n ? ('--workers', $n) : ()), $o{app} }
    POSIX::_exit(127);
  }
  # Ready when every worker answers: a few requests on new connections
  my $deadline = Time::HiRes::time() + 20;
  while (Time::HiRes::time() < $deadline) {
    my $ok = 0;
    for (1 .. 4) {
      my $c = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port) or last;
      print {$c} "GET $o{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
      local $/;
      my $r = <$c> // '';
      $ok++ if $r =~ m{\AHTTP/1\.1 200 };
    }
    return ($pid, $port) if $ok == 4;
    Time::HiRes::sleep(0.1);
  }
  kill 'KILL', $pid;
  die "workers.pl: server with $n worker(s) did not start\n";
}

# One wrk run: req/s, non-2xx responses, and the server's and wrk's CPU in cores
sub wrk ($port, $secs, $pid) {
  my ($t0, $s0, @c0) = (Time::HiRes::time(), group_cpu_seconds($pid), (times)[2, 3]);
  my $out = `wrk -t$o{threads} -c$o{conns} -d${secs}s http://127.0.0.1:$port$o{path} 2>&1`;
  my ($t1, $s1, @c1) = (Time::HiRes::time(), group_cpu_seconds($pid), (times)[2, 3]);
  my ($rps) = $out =~ /Requests\/sec:\s+([0-9.]+)/ or die "workers.pl: cannot read wrk output:\n$out";
  my $errors = $out =~ /Non-2xx or 3xx responses: ([0-9]+)/ ? $1 : 0;
  my $wall = $t1 - $t0;
  return ($rps, $errors, ($s1 - $s0) / $wall, ($c1[0] + $c1[1] - $c0[0] - $c0[1]) / $wall);
}

sub median { my @s = sort { $a <=> $b } @_; return $s[$#s / 2] }

my %result;
my @settings = split /,/, $o{workers};
for my $n (@settings) {
  my ($pid, $port) = start_server($n);
  wrk($port, $o{warmup}, $pid) if $o{warmup};
  my (@r, @server, @client, @us);
  for (1 .. $o{rounds}) {
    my ($rps, $err, $server, $client) = wrk($port, $o{duration}, $pid);
    warn "workers.pl: $err non-2xx responses with $n worker(s)\n" if $err;
    push @r, $rps;
    push @server, $server;
    push @client, $client;
    push @us, $server / $rps * 1e6;
  }
  kill 'TERM', $pid;
  waitpid($pid, 0);
  $result{$n} = {median => median(@r), all => \@r, server => median(@server),
    client => median(@client), us => median(@us)};
}

my $cores = 0;
if (open(my $fh, '<', '/proc/cpuinfo')) { $cores = grep { /^processor\s*:/ } <$fh> }
my $backend = $o{backend} eq 'auto' ? `$^X -I$root/lib -MPAGI::Server -e 'print PAGI::Server->backend'` : uc $o{backend};
printf "pagi-server workers: %s %s, backend %s, wrk -t%d -c%d, %d x %d s, %s core(s)\n",
  $o{app} =~ s{.*/}{}r, $o{path}, $backend, $o{threads}, $o{conns}, $o{rounds}, $o{duration}, $cores || '?';
printf "%-10s %9s  %12s  %9s  %14s  %s\n", 'workers', 'req/s', 'server cores', 'wrk cores',
  'server us/req', 'rounds (req/s)';
for my $n (@settings) {
  my $r = $result{$n};
  printf "%-10s %9.0f  %12.2f  %9.2f  %14.1f  %s\n", $n ? $n : '0 (single)', @$r{qw(median server client us)},
    join ' ', map { sprintf '%.0f', $_ } @{$r->{all}};
}
# What N processes would serve with N cores to themselves, from the CPU each request took
sub capacity ($n) { ($n || 1) / $result{$n}{us} }
for my $n (grep { $_ > 1 } @settings) {
  for my $base (grep { defined $result{$_} } 0, 1) {
    printf "scaling %d workers / %s: %.2fx req/s measured (wrk on the same cores), %.2fx CPU-accounted\n",
      $n, $base ? '1 worker' : 'single process', $result{$n}{median} / $result{$base}{median},
      capacity($n) / capacity($base);
  }
}
if ($result{0} && $result{1}) {
  printf "1 worker / single process: %.2fx req/s, %.2fx CPU per request (the cost of the master/worker split)\n",
    $result{1}{median} / $result{0}{median}, $result{1}{us} / $result{0}{us};
}
