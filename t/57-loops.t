use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use File::Temp ();
use lib 't/lib';
use PAGI::Test::Server qw(:all);
use PAGI::Test::Load qw(children_of);

# Every signal we document, on every IO::Async loop that --loop accepts and that is
# installed here (script/install-deps installs Mojo, on EV, and Glib): a single
# process serves, reopens its access log on USR1 and stops on TERM and on INT; a
# pre-forked one replaces its workers on HUP, grows and shrinks on TTIN/TTOU, has
# every worker reopen the log on USR1, and stops on TERM. Loops whose wait runs in C
# (EV under Mojo::IOLoop) never return to Perl when a signal arrives: a plain %SIG
# handler alone would not run there, and the server would not stop.

my @LOOPS = grep { my $m = "IO/Async/Loop/$_.pm"; eval { require $m; 1 } } qw(Epoll Poll Select Mojo Glib);
note 'loops installed: ' . join ', ', @LOOPS;
if (eval { require Mojo::IOLoop; require EV; 1 } && grep { $_ eq 'Mojo' } @LOOPS) {
  note 'Mojo::IOLoop runs on ' . ref(Mojo::IOLoop->singleton->reactor);
}

my $dir = File::Temp->newdir;
my $APP = "$dir/app.pl";
{
  open(my $fh, '>', $APP) or die "$APP: $!";
  print {$fh} <<'APP';
use strict;
use warnings;
use experimental 'signatures';
sub ($scope, $receive, $send) {
  return Future->done if $scope->{type} ne 'http';
  return $send->({type => 'http.response.start', status => 200, headers => [['x-pid', $$]]})
    ->then(sub { $send->({type => 'http.response.body', body => "pid $$"}) });
}
APP
  close $fh;
}

sub get ($port, $path) {
  my ($r) = http_exchange($port, "GET $path HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  return $r->[0];
}

sub wait_children ($pid, $n) {
  my @k;
  wait_for(sub { @k = children_of($pid); @k == $n }, 10);
  return sort { $a <=> $b } @k;
}

for my $loop (@LOOPS) {
  subtest "--loop $loop, one process: USR1, TERM, INT" => sub {
    my $log = "$dir/$loop.access.log";
    my $srv = start_cli(args => [$APP, '--port', 0, '--loop', $loop, '--access-log', $log]);
    ok($srv->port, 'started') or return diag $srv->log;
    like($srv->log, qr/loop IO::Async::Loop::$loop\b/, "on IO::Async::Loop::$loop");
    is(get($srv->port, '/before')->{status}, 200, 'serves');
    wait_for(sub { slurp($log) =~ m{GET /before } }, 5);
    rename($log, "$log.1") or die "rename: $!";
    kill 'USR1', $srv->pid;
    ok($srv->wait_log(qr/access log reopened/), 'USR1: the access log is reopened');
    is(get($srv->port, '/after')->{status}, 200, 'still serving');
    kill 'TERM', $srv->pid;
    is($srv->wait_exit(10), 0, 'TERM: a graceful stop, exit 0');
    like($srv->log, qr/SIGTERM received/, '... saying why');
    ok(wait_for(sub { slurp($log) =~ m{GET /after } }, 1), 'the line after USR1 is in the new file');

    $srv = start_cli(args => [$APP, '--port', 0, '--loop', $loop, '--no-access-log']);
    ok($srv->port, 'started again');
    kill 'INT', $srv->pid;
    is($srv->wait_exit(10), 0, 'INT while idle (no request yet): exit 0');
  };

  subtest "--loop $loop, --workers 2: HUP, TTIN, TTOU, USR1, TERM" => sub {
    my $log = "$dir/$loop.workers.log";
    my $srv = start_cli(args => [$APP, '--port', 0, '--loop', $loop, '--workers', 2, '--access-log', $log]);
    ok($srv->port, 'started') or return diag $srv->log;
    my @old = wait_children($srv->pid, 2);
    is(scalar @old, 2, 'two workers');
    ok(wait_for(sub { (get($srv->port, '/') // {})->{status} == 200 }, 5), 'serves');
    kill 'HUP', $srv->pid;
    my @new;
    ok(wait_for(sub {
      @new = children_of($srv->pid);
      @new == 2 && !grep { my $p = $_; grep { $_ == $p } @old } @new;
    }, 15), 'HUP: two new workers replace the old ones');
    kill 'TTIN', $srv->pid;
    is(my @k = wait_children($srv->pid, 3), 3, 'TTIN: three workers');
    kill 'TTOU', $srv->pid;
    is(@k = wait_children($srv->pid, 2), 2, 'TTOU: two workers');
    kill 'USR1', $srv->pid;
    ok($srv->wait_log(qr/\[worker 1 pid [0-9]+\] access log reopened/)
      && $srv->wait_log(qr/\[worker 2 pid [0-9]+\] access log reopened/), 'USR1: every worker reopens the log');
    ok(wait_for(sub { (get($srv->port, '/') // {})->{status} == 200 }, 5), 'still serving');
    my $master = $srv->pid;
    kill 'TERM', $master;
    is($srv->wait_exit(15), 0, 'TERM: the master exits 0');
    is(@k = children_of($master), 0, 'no worker left');
  };
}

done_testing;
