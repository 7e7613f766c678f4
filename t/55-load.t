use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use lib 't/lib';
use PAGI::Test::Server qw(start_server wait_for);
use PAGI::Test::Load qw(run_load worker_app children_of rss_kb);

# Load and fault test: 10,000 requests over 200 concurrent keep-alive connections to
# two workers, every response checked, no worker lost; then the resident memory of
# each worker across many more keep-alive requests (a reported figure with a
# generous threshold, not a timing assertion). Bounded in count and time.

use constant {
  REQUESTS  => 10_000,
  CONNS     => 200,
  SOAK      => 100_000,       # keep-alive requests between the two RSS readings
  LEAK_KB   => 20 * 1024,     # growth per worker that fails the test
};

plan skip_all => 'needs /proc (Linux)' unless -r "/proc/$$/status";

my $srv = start_server(app => worker_app(), workers => 2, keepalive_timeout => 30);
my @kids;
wait_for(sub { @kids = children_of($srv->pid); @kids == 2 }, 10);
is(scalar @kids, 2, 'two workers');
$srv->wait_reports(2, 10);

my $res = run_load(port => $srv->port, conns => CONNS, requests => REQUESTS, procs => 4, timeout => 50);
is($res->{ok}, REQUESTS, sprintf '%d requests over %d connections: all answered correctly', REQUESTS, CONNS)
  or diag explain $res->{error_list};
is($res->{errors}, 0, 'no errors');
is($res->{reconnects}, 0, 'no connection was closed by the server');
is_deeply([sort { $a <=> $b } keys %{$res->{pids}}], \@kids, 'both workers served');
diag sprintf 'load: %d requests, %d connections, 2 workers: %.2f s, %.0f req/s (%s)', REQUESTS, CONNS,
  $res->{elapsed}, $res->{rate}, join ', ', map { "pid $_: $res->{pids}{$_}" } sort keys %{$res->{pids}};

my %before = map { $_ => rss_kb($_) } @kids;
my $soak = run_load(port => $srv->port, conns => CONNS, requests => SOAK, procs => 4, timeout => 50);
is($soak->{ok}, SOAK, SOAK . ' more keep-alive requests answered') or diag explain $soak->{error_list};
my %after = map { $_ => rss_kb($_) } @kids;
for my $pid (@kids) {
  my $growth = $after{$pid} - $before{$pid};
  diag sprintf 'RSS worker %d: %d kB after warm-up, %d kB after %d more requests (%+d kB)',
    $pid, $before{$pid}, $after{$pid}, $soak->{pids}{$pid} // 0, $growth;
  cmp_ok($growth, '<', LEAK_KB, "worker $pid: RSS growth under " . LEAK_KB . ' kB');
}

my @now = children_of($srv->pid);
is_deeply(\@now, \@kids, 'no worker was lost or replaced');
unlike($srv->log, qr/exited unexpectedly|\[error\]/, 'no crash or error logged');
is($srv->stop, 0, 'the master exits 0');

done_testing;
