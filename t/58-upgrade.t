use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use File::Temp ();
use POSIX ();
use lib 't/lib';
use PAGI::Test::Server qw(start_cli http_exchange wait_for slurp ROOT);
use PAGI::Test::Load qw(start_load children_of);

# The USR2 upgrade, as an operator runs it: bin/pagi-server with --pid, a steady
# client load on keep-alive connections, USR2 to the process in the pid file. The new
# server is started from the same command line (so it loads the application file as
# it is now: v2), inherits the listening socket, and the old one retires once the new
# one serves. No request may fail. Then an upgrade to code that does not compile:
# the server that runs keeps serving, and says why. HUP under the same load too.

# The new server is started by the old one and outlives it: this test adopts such
# orphans (PR_SET_CHILD_SUBREAPER) to see them exit and read their status
my $SUBREAPER = eval {
  require 'syscall.ph';
  syscall(&SYS_prctl, 36, 1, 0, 0, 0) == 0;    # PR_SET_CHILD_SUBREAPER
};

my $dir = File::Temp->newdir;
my $APP = "$dir/app.pl";
my $PID = "$dir/pagi.pid";

# The application file; its version is written into it
sub write_app ($version, $broken = '') {
  open(my $fh, '>', "$APP.new") or die $!;
  print {$fh} <<"APP";
use strict; use warnings; use experimental 'signatures'; use Future;
$broken
sub (\$scope, \$receive, \$send) {
  return Future->done if \$scope->{type} eq 'lifespan';
  \$send->({type => 'http.response.start', status => 200,
    headers => [['content-type', 'text/plain'], ['x-pid', \$\$], ['x-version', '$version']]})
    ->then(sub { \$send->({type => 'http.response.body', body => "ok \$scope->{path}\\n"}) });
};
APP
  close $fh;
  rename("$APP.new", $APP) or die $!;
}

sub pid_in_file () { slurp($PID) =~ /\A([0-9]+)\n\z/ ? $1 : undef }

sub alive ($pid) {
  open(my $fh, '<', "/proc/$pid/stat") or return 0;
  return (<$fh> // '') =~ /\) [^ZX] / ? 1 : 0;
}

# Waits for a process that is not our child (adopted, or not) to be gone; its exit
# status when we could reap it
sub gone ($pid, $timeout = 15) {
  my $status;
  wait_for(sub {
    if ($SUBREAPER && waitpid($pid, POSIX::WNOHANG()) == $pid) { $status = $? >> 8; return 1 }
    !alive($pid);
  }, $timeout);
  return alive($pid) ? 'alive' : $status // 'gone';
}

# Whatever new servers a test started and left running (when it failed) are stopped
my @STARTED;
sub track ($srv) { push @STARTED, $srv; $srv }
END {
  if (my $pid = pid_in_file()) { kill 'KILL', $pid, children_of($pid) if alive($pid) }
  for my $srv (@STARTED) {
    for my $pid ($srv->log =~ /started a new (?:master|server process) \(pid ([0-9]+)\)/g) {
      kill 'KILL', $pid, children_of($pid) if alive($pid);
    }
  }
}

sub version_and_pid ($port) {
  my ($r) = http_exchange($port, "GET /v HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  return $r->[0] ? "$r->[0]{h}{'x-version'} $r->[0]{h}{'x-pid'}" : 'no answer';
}

for my $case (['--workers 2', '--workers', 2], ['a single process']) {
  my ($name, @mode) = @$case;
  subtest "USR2 under load ($name): the new server takes over, no request fails" => sub {
    write_app('v1');
    unlink $PID;
    my $srv = track start_cli(args => [$APP, '--port', 0, @mode, '--pid', $PID, '--no-access-log',
      '--shutdown-timeout', 10]);
    ok($srv->port, 'started') or return diag $srv->log;
    my $old = $srv->pid;
    ok(wait_for(sub { (pid_in_file() // 0) == $old }, 5), 'the pid file names it');
    my @old_workers = @mode ? do { my @k; wait_for(sub { @k = children_of($old); @k == 2 }, 10); @k } : ();
    like(version_and_pid($srv->port), qr/\Av1 /, 'v1 serves');

    # 50 keep-alive connections kept busy for 4 s (thousands of requests), across the upgrade
    my $load = start_load(port => $srv->port, conns => 50, requests => 100_000, procs => 2, duration => 4);
    select(undef, undef, undef, 1);
    write_app('v2');
    ok(kill('USR2', $old), 'USR2 to the process in the pid file, with v2 of the application on disk');
    my $res = $load->wait;
    is($res->{errors}, 0, "no request failed ($res->{ok} answered over 50 connections)")
      or diag explain $res->{error_list};
    cmp_ok($res->{ok}, '>=', 2000, 'at least 2,000 requests answered during the upgrade');

    is($srv->wait_exit(15), 0, 'the old server retired: exit 0');
    my $new = pid_in_file();
    ok($new && $new != $old && alive($new), "the pid file names the new server ($new), which runs");
    like($srv->log, qr/SIGUSR2 received: started a new (?:master|server process) \(pid $new\)/, 'the old one logged the upgrade');
    like($srv->log, qr/listening on http:\/\/127\.0\.0\.1:${\ $srv->port}\/ \(socket from the previous server\)/,
      '... the new one listens on the inherited socket');
    my %served = %{$res->{pids}};
    my @new_workers = @mode ? children_of($new) : ($new);
    ok((grep { $served{$_} } @old_workers ? @old_workers : $old), 'the old server answered part of the load');
    ok((grep { $served{$_} } @new_workers), 'the new one answered the rest');
    note 'served by: ' . join ', ', map { "$_ x$served{$_}" } sort keys %served;
    my %v;
    $v{version_and_pid($srv->port) =~ s/ .*//r}++ for 1 .. 10;
    is_deeply(\%v, {v2 => 10}, 'new connections get v2: the application file was loaded anew');
    ok(!grep({ alive($_) } @old_workers), 'no old worker is left') if @mode;
    if (@mode) {
      # The new master takes the other signals as the first one did
      my $n_kids = sub ($n) { wait_for(sub { my @k = children_of($new); @k == $n }, 10) };
      kill 'TTIN', $new;
      ok($n_kids->(3), 'TTIN to the new master: three workers');
      kill 'TTOU', $new;
      ok($n_kids->(2), 'TTOU: two');
      my @before = children_of($new);
      kill 'HUP', $new;
      ok(wait_for(sub { my @k = children_of($new); @k == 2 && !grep { my $p = $_; grep { $_ == $p } @before } @k }, 15),
        'HUP: two new workers');
    }

    # An upgrade to code that does not compile: the running server carries on
    write_app('v3', 'sub {');
    my $load2 = start_load(port => $srv->port, conns => 10, requests => 100_000, procs => 1, duration => 2.5);
    select(undef, undef, undef, 0.3);
    ok(kill('USR2', $new), 'USR2 with a broken application on disk');
    ok($srv->wait_log(qr/upgrade failed: the new (?:master|server process) \(pid [0-9]+\) exited with status 2 before/, 10),
      'the server says the upgrade failed and why (the new one exited with status 2)');
    like($srv->log, qr/cannot load '[^']*app\.pl'/, '... after the new one said what it could not load');
    my $res2 = $load2->wait;
    is($res2->{errors}, 0, "no request failed meanwhile ($res2->{ok} answered)") or diag explain $res2->{error_list};
    is(pid_in_file(), $new, 'the pid file still names the running server');
    like(version_and_pid($srv->port), qr/\Av2 /, 'v2 still serves');

    ok(kill('TERM', $new), 'TERM to the new server');
    my $status = gone($new);
    isnt($status, 'alive', 'it stops');
    is($status, 0, '... with exit status 0') if $SUBREAPER;
    ok(!-e $PID, 'its pid file is removed');
  };
}

subtest 'USR2 to code whose second worker cannot start: the new master gives up, the old one serves on' => sub {
  write_app('p1');
  unlink $PID;
  my $srv = track start_cli(args => [$APP, '--port', 0, '--workers', 2, '--pid', $PID, '--no-access-log']);
  ok($srv->port, 'started') or return diag $srv->log;
  my $old = $srv->pid;
  wait_for(sub { (pid_in_file() // 0) == $old }, 5);
  # v2: lifespan startup fails in worker 2 only, after worker 1 serves
  open(my $fh, '>', "$APP.new") or die $!;
  print {$fh} <<'APP';
use strict; use warnings; use experimental 'signatures'; use Future;
sub ($scope, $receive, $send) {
  if ($scope->{type} eq 'lifespan') {
    return $receive->()->then(sub { $send->({type => 'lifespan.startup.complete'}) })
      if $scope->{pagi}{worker_num} == 1;
    # (after worker 1 serves)
    require IO::Async::Loop;
    return $receive->()->then(sub { IO::Async::Loop->new->delay_future(after => 0.5) })
      ->then(sub { $send->({type => 'lifespan.startup.failed', message => 'no database for worker 2'}) });
  }
  $send->({type => 'http.response.start', status => 200, headers => [['x-version', 'p2']]})
    ->then(sub { $send->({type => 'http.response.body', body => 'p2'}) });
};
APP
  close $fh;
  rename("$APP.new", $APP) or die $!;
  kill 'USR2', $old;
  ok($srv->wait_log(qr/upgrade failed: the new master \(pid ([0-9]+)\) exited with status 1 before/, 15),
    'the old master says the upgrade failed') or diag $srv->log;
  my ($new) = $srv->log =~ /started a new master \(pid ([0-9]+)\)/;
  ok($new && !alive($new), 'the new master is gone (not left serving beside the old one)');
  like($srv->log, qr/no database for worker 2/, 'the reason is in the log');
  like($srv->log, qr/upgrade: a worker exited before the workers all served; giving up \(the previous master, pid $old, serves on\)/,
    '... and the new master said why it gave up, though its worker 1 served');
  ok(!$srv->exited, 'the old master serves on');
  is(pid_in_file(), $old, '... and the pid file still names it');
  like(version_and_pid($srv->port), qr/\Ap1 /, 'p1 answers');
  is($srv->stop, 0, 'exit 0');
};

subtest '-D --pid, then USR2: the pid file follows the new daemon' => sub {
  write_app('d1');
  unlink $PID;
  my $port = do { require IO::Socket::IP; IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0, Listen => 1)->sockport };
  my $r = PAGI::Test::Server::run_cli(args => [$APP, '--port', $port, '--workers', 2, '-D', '--pid', $PID, '--no-access-log']);
  is($r->{exit}, 0, '-D returns 0 once the daemon listens');
  my $old = pid_in_file();
  ok($old && alive($old), "the pid file names the daemon ($old)") or return;
  wait_for(sub { version_and_pid($port) =~ /\Ad1 / }, 10);
  write_app('d2');
  kill 'USR2', $old;
  ok(wait_for(sub { !alive($old) }, 15), 'USR2: the old daemon retires');
  my $new = pid_in_file();
  ok($new && $new != $old && alive($new), "the pid file names the new one ($new), which runs")
    or return diag 'pid file: ' . slurp($PID);
  like(version_and_pid($port), qr/\Ad2 /, 'd2 serves');
  kill 'TERM', $new;
  ok(wait_for(sub { !alive($new) }, 15), 'TERM stops it');
  ok(!-e $PID, '... and the pid file is removed');
};

subtest 'HUP under the same load: no request fails' => sub {
  write_app('h1');
  my $srv = track start_cli(args => [$APP, '--port', 0, '--workers', 2, '--no-preload', '--no-access-log']);
  ok($srv->port, 'started') or return diag $srv->log;
  my @old;
  wait_for(sub { @old = children_of($srv->pid); @old == 2 }, 10);
  my $load = start_load(port => $srv->port, conns => 50, requests => 100_000, procs => 2, duration => 4);
  select(undef, undef, undef, 1);
  write_app('h2');
  ok(kill('HUP', $srv->pid), 'HUP');
  my $res = $load->wait;
  is($res->{errors}, 0, "no request failed ($res->{ok} answered over 50 connections)") or diag explain $res->{error_list};
  cmp_ok($res->{ok}, '>=', 2000, 'at least 2,000 requests answered');
  my @new;
  wait_for(sub { @new = children_of($srv->pid); @new == 2 && !grep { my $p = $_; grep { $_ == $p } @old } @new }, 10);
  ok(@new == 2 && !grep({ my $p = $_; grep { $_ == $p } @old } @new), 'two new workers');
  like(version_and_pid($srv->port), qr/\Ah2 /, '--no-preload: they serve the new code');
  is($srv->stop, 0, 'exit 0');
};

subtest 'USR2 is ignored while an upgrade is under way' => sub {
  write_app('w1');
  # An application file that loads slowly once $dir/slow exists: the window in
  # which the new master is starting
  open(my $fh, '>', "$dir/slow.pl") or die $!;
  print {$fh} "select(undef, undef, undef, -e '$dir/slow' ? 1.5 : 0); do '$APP' or die \$@;\n";
  close $fh;
  my $srv = track start_cli(args => ["$dir/slow.pl", '--port', 0, '--workers', 2, '--no-access-log']);
  ok($srv->port, 'started') or return diag $srv->log;
  open(my $flag, '>', "$dir/slow") or die $!;
  kill 'USR2', $srv->pid;
  ok($srv->wait_log(qr/SIGUSR2 received: started a new master/), 'a first USR2 starts the upgrade');
  kill 'USR2', $srv->pid;
  ok($srv->wait_log(qr/SIGUSR2 ignored: an upgrade is already under way/), 'a second one is ignored, saying why');
  is($srv->wait_exit(15), 0, 'the old master retires once the new one serves');
  my ($new) = $srv->log =~ /started a new master \(pid ([0-9]+)\)/;
  my @done = grep { /upgrade: serving/ } split /\n/, $srv->log;
  is(scalar @done, 1, 'one upgrade took place');
  kill 'TERM', $new;
  isnt(gone($new), 'alive', 'the new master stops on TERM');
};

done_testing;
