use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use File::Temp ();
use IO::Socket::IP;
use lib 't/lib';
use PAGI::Test::Server qw(:all);
use PAGI::Test::Load qw(children_of);

# Workers when the server is embedded, as upstream documents it: $loop->add($server),
# $server->listen (which forks the workers and returns), $loop->run (the master runs
# on the program's own loop): signals, respawns, shutdown from the program, a fresh
# loop in each worker, and a worker that cannot start not restarted in a tight loop.
# The program below is ours; it runs as a child process, on the loop class T63_LOOP.

my $dir = File::Temp->newdir;
my $PROGRAM = "$dir/embed.pl";
{
  open(my $fh, '>', $PROGRAM) or die $!;
  print {$fh} <<'PROGRAM';
use strict;
use warnings;
use experimental 'signatures';
use Scalar::Util qw(refaddr);
use IO::Async::Loop;
use PAGI::Server;
use PAGI::Test::Server qw(report respond read_body);
use PAGI::Test::Load qw(children_of);

my $class = $ENV{T63_LOOP} // 'IO::Async::Loop';
(my $file = "$class.pm") =~ s{::}{/}g;
require $file;
my $loop = $class->new;
my $mine = refaddr $loop;
my $app = sub ($scope, $receive, $send) {
  if ($scope->{type} eq 'lifespan') {
    return $receive->()->then(sub {
      die "no database here\n" if $ENV{T63_FAIL};
      # Which loop the worker runs on: IO::Async's shared one, made after the fork
      my $now = IO::Async::Loop->new;
      report(case => 'worker', pid => $$, worker_num => $scope->{pagi}{worker_num},
        fresh => (refaddr($now) != $mine ? 1 : 0), class => ref $now);
      $send->({type => 'lifespan.startup.complete'});
    })->then(sub { $receive->() })->then(sub { $send->({type => 'lifespan.shutdown.complete'}) });
  }
  return read_body($receive)->then(sub { respond($send, 200, "pid $$") });
};
my $server = PAGI::Server->new(app => $app, workers => 2, host => '127.0.0.1', port => 0,
  access_log => undef, shutdown_timeout => 3, lifespan => 'on', $ENV{T63_LOOP_TYPE} ? (loop_type => $ENV{T63_LOOP_TYPE}) : ());
$loop->add($server);
$server->listen->get;
report(case => 'listening', port => $server->port, master => $$, running => $server->is_running);
# The program stops the server itself when the test leaves a file there
my $stop = $ENV{T63_STOP};
my $poll;
$poll = sub {
  return $loop->watch_time(after => 0.05, code => $poll) unless -e $stop;
  if ($ENV{T63_REMOVE}) {
    # Removed while serving: the workers are told to stop at once, nothing waits
    $loop->remove($server);
    my $until = time + 5;
    my $check;
    $check = sub {
      my @left = children_of($$);
      return $loop->watch_time(after => 0.05, code => $check) if @left && time < $until;
      report(case => 'removed', children => \@left, running => $server->is_running);
      $loop->stop;
    };
    return $check->();
  }
  my $f = $server->shutdown;
  $f->on_done(sub {
    report(case => 'stopped', children => [children_of($$)], running => $server->is_running);
    $loop->stop;
  });
};
$loop->watch_time(after => 0.05, code => $poll);
$loop->run;
report(case => 'loop returned');
exit 0;
PROGRAM
  close $fh;
}

sub embed (%env) {
  my $srv = start_command(command => [$^X, '-I' . ROOT . '/lib', '-I' . ROOT . '/t/lib', $PROGRAM],
    env => {T63_STOP => "$dir/stop", %env});
  my ($l) = $srv->reports_of('listening', 1, 10);
  $srv->{port} = $l && $l->{port};
  return ($srv, $l);
}

sub worker_pids ($srv, $n) {
  my @r;
  wait_for(sub { @r = $srv->reports_of('worker', $n, 0); @r >= $n }, 10);
  return @r;
}

# The pids that answer requests, until $n different ones did (a worker reports from
# its lifespan startup, a moment before it accepts) or 5 s passed
sub pids_answering ($port, $n) {
  my %seen;
  wait_for(sub {
    my ($r) = http_exchange($port, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", until_close => 1);
    $seen{$1} = 1 if $r->[0] && $r->[0]{body} =~ /\Apid ([0-9]+)\z/;
    keys %seen >= $n;
  }, 5);
  return sort { $a <=> $b } keys %seen;
}

my @LOOPS = ('IO::Async::Loop', 'IO::Async::Loop::Poll', grep { my $m = "$_.pm" =~ s{::}{/}gr; eval { require $m; 1 } }
  'IO::Async::Loop::Mojo');

for my $loop_class (@LOOPS) {
  subtest "on the program's $loop_class: listen forks the workers and returns; the loop runs the master" => sub {
    unlink "$dir/stop";
    my ($srv, $l) = embed(T63_LOOP => $loop_class);
    ok($l && $l->{port}, 'listen returned, with the port') or return diag $srv->log;
    ok($l->{running}, '... and the server is running');
    my @w = worker_pids($srv, 2);
    is(scalar @w, 2, 'two workers ran lifespan startup');
    is_deeply([sort map { $_->{worker_num} } @w], [1, 2], '... as worker 1 and worker 2');
    is_deeply([map { $_->{fresh} } @w], [1, 1], '... each on a fresh loop, not the program\'s');
    my @pids = pids_answering($l->{port}, 2);
    is_deeply(\@pids, [sort { $a <=> $b } map { $_->{pid} } @w], 'both workers serve, the master does not')
      or diag $srv->log;
    # The master's signals, on the program's loop
    kill 'HUP', $l->{master};
    ok(wait_for(sub { my @k = children_of($l->{master}); @k == 2 && !grep { my $k = $_; grep { $_ == $k } @pids } @k }, 15),
      'HUP: two new workers replace the old ones') or diag $srv->log;
    kill 'TTIN', $l->{master};
    ok(wait_for(sub { my @k = children_of($l->{master}); @k == 3 }, 10), 'TTIN: three workers');
    kill 'TTOU', $l->{master};
    ok(wait_for(sub { my @k = children_of($l->{master}); @k == 2 }, 10), 'TTOU: two');
    my ($one) = children_of($l->{master});
    kill 'KILL', $one;
    ok(wait_for(sub { my @k = children_of($l->{master}); @k == 2 && !grep { $_ == $one } @k }, 10),
      'a worker killed is replaced');
    # The program's own shutdown: its Future is done once the workers are gone
    open(my $fh, '>', "$dir/stop") or die $!;
    close $fh;
    my ($stopped) = $srv->reports_of('stopped', 1, 15);
    ok($stopped, 'the program\'s shutdown completed') or return diag $srv->log;
    is_deeply($stopped->{children}, [], '... once no worker was left');
    ok(!$stopped->{running}, '... and the server no longer runs');
    ok($srv->reports_of('loop returned', 1, 5), 'the program went on');
    is($srv->wait_exit(10), 0, '... and exited 0');
  };
}

subtest '$loop->remove($server) while the master serves: the workers stop at once' => sub {
  unlink "$dir/stop";
  my ($srv, $l) = embed(T63_REMOVE => 1);
  ok($l && $l->{port}, 'listening') or return diag $srv->log;
  is(scalar(worker_pids($srv, 2)), 2, 'two workers');
  open(my $fh, '>', "$dir/stop") or die $!;
  close $fh;
  my ($r) = $srv->reports_of('removed', 1, 10);
  ok($r, 'removed') or return diag $srv->log;
  is_deeply($r->{children}, [], 'no worker is left running');
  ok(!$r->{running}, 'the server does not run');
  ok(!IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $l->{port}), 'the port is closed');
  is($srv->wait_exit(10), 0, 'the program exits 0');
};

subtest 'TERM to the program: the workers stop gracefully, then the loop' => sub {
  unlink "$dir/stop";
  my ($srv, $l) = embed();
  ok($l && $l->{port}, 'listening') or return diag $srv->log;
  is(scalar(worker_pids($srv, 2)), 2, 'two workers');
  my $c = http_connect($l->{port}, timeout => 5);
  kill 'TERM', $l->{master};
  ok($srv->reports_of('loop returned', 1, 15), '$loop->run returned once the workers were gone') or diag $srv->log;
  is($srv->wait_exit(10), 0, 'exit 0');
  like($srv->log, qr/SIGTERM received: stopping 2 worker\(s\)/, 'the master said so');
  is_deeply([children_of($l->{master})], [], 'no worker left');
};

subtest 'workers that cannot start: stopped, not restarted in a tight loop' => sub {
  unlink "$dir/stop";
  my ($srv, $l) = embed(T63_FAIL => 1);
  ok($l && $l->{port}, 'listen returned (the workers start after it)') or return diag $srv->log;
  ok($srv->reports_of('loop returned', 1, 15), 'the master stopped and the loop returned') or diag $srv->log;
  like($srv->log, qr/no database here/, 'the reason is in the log');
  like($srv->log, qr/a worker could not start the application; stopping/, '... and why the master stopped');
  my $forks = () = $srv->log =~ /worker \d started \(pid/g;
  cmp_ok($forks, '<=', 4, "$forks fork(s) in all, not a loop of them");
  is($srv->wait_exit(10), 0, 'the program exits');
};

done_testing;
