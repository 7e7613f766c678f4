use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use lib 't/lib';
use PAGI::Test::Server qw(start_server start_cli http_connect http_exchange wait_for slurp);
use File::Temp ();
use PAGI::Test::Load qw(start_load worker_app children_of);

# Signals of a pre-forked server: TERM (graceful stop with in-flight requests),
# HUP under load (no request refused or dropped), TTIN/TTOU (worker count), USR1
# (every worker reopens the access log file), HUP with --no-preload (new code).

sub wait_children ($master, $n, $timeout = 10) {
  my @k;
  wait_for(sub { @k = children_of($master); @k == $n }, $timeout);
  return @k;
}

subtest 'TERM: in-flight requests finish, lifespan shutdown runs, master exits 0' => sub {
  my $srv = start_server(app => worker_app(slow => 1), workers => 2);
  wait_children($srv->pid, 2);
  $srv->wait_reports(2, 10);
  my @c = map { http_connect($srv->port) } 1 .. 4;
  $_->send("GET /slow/$_ HTTP/1.1\r\nHost: x\r\n\r\n") for @c;
  select(undef, undef, undef, 0.3);
  kill 'TERM', $srv->pid;
  my $i = 0;
  for my $c (@c) {
    $i++;
    my ($r) = $c->read_responses(timeout => 5);
    ok($r && $r->{status} == 200, "in-flight request $i answered");
  }
  is($srv->wait_exit(15), 0, 'the master exits 0');
  my @left = children_of($srv->pid);
  is(scalar @left, 0, 'no worker left');
  my $down = grep { $_->{lifespan} eq 'shutdown' } $srv->reports;
  is($down, 2, 'lifespan shutdown ran in both workers');
};

subtest 'HUP under load: new workers replace the old, no request dropped' => sub {
  my $srv = start_server(app => worker_app(), workers => 2);
  my @old = wait_children($srv->pid, 2);
  $srv->wait_reports(2, 10);
  my $load = start_load(port => $srv->port, conns => 40, requests => 40_000, procs => 2,
    duration => 4, slow_every => 50);
  select(undef, undef, undef, 1.2);
  ok(kill('HUP', $srv->pid), 'SIGHUP to the master');
  my $res = $load->wait;
  is($res->{errors}, 0, "no request failed ($res->{ok} answered)") or diag explain $res->{error_list};
  cmp_ok($res->{ok}, '>', 1000, 'the load kept being served');
  my @new = wait_children($srv->pid, 2);
  is(scalar @new, 2, 'two workers afterwards');
  ok(!grep({ my $p = $_; grep { $_ == $p } @old } @new), 'both are new processes');
  my %by = %{$res->{pids}};
  ok((grep { $by{$_} } @old) && (grep { $by{$_} } @new), 'old and new workers both served the load');
  note 'served by: ' . join ', ', map { "$_ x$by{$_}" } sort keys %by;
  my @starts = grep { $_->{lifespan} eq 'startup' } $srv->reports;
  is(scalar @starts, 4, 'lifespan startup ran in the 2 old and the 2 new workers');
  is($srv->stop, 0, 'the master exits 0');
};

subtest 'TTIN and TTOU change the number of workers' => sub {
  my $srv = start_server(app => worker_app(), workers => 2);
  my @k = wait_children($srv->pid, 2);
  is(scalar @k, 2, 'two workers');
  kill 'TTIN', $srv->pid;
  @k = wait_children($srv->pid, 3);
  is(scalar @k, 3, 'TTIN: three workers');
  my @r = $srv->wait_reports(3, 10);
  is_deeply([sort map { $_->{worker_num} } @r], [1, 2, 3], 'the new one is worker_num 3');
  kill 'TTIN', $srv->pid;
  @k = wait_children($srv->pid, 4);
  is(scalar @k, 4, 'TTIN: four workers');
  kill 'TTOU', $srv->pid;
  @k = wait_children($srv->pid, 3);
  is(scalar @k, 3, 'TTOU: three workers');
  kill 'TTOU', $srv->pid;
  @k = wait_children($srv->pid, 2);
  is(scalar @k, 2, 'TTOU: two workers');
  for (1 .. 2) {
    kill 'TTOU', $srv->pid;
    select(undef, undef, undef, 0.5);
  }
  @k = wait_children($srv->pid, 1);
  is(scalar @k, 1, 'TTOU stops at one worker');
  select(undef, undef, undef, 0.5);
  @k = children_of($srv->pid);
  is(scalar @k, 1, '... and keeps it');
  my $c = http_connect($srv->port);
  $c->send("GET /r/7 HTTP/1.1\r\nHost: x\r\n\r\n");
  my ($r) = $c->read_responses;
  is($r && $r->{body}, "ok /r/7\n", 'the last worker serves');
  unlike($srv->log, qr/exited unexpectedly/, 'every exit was expected');
  is($srv->stop, 0, 'the master exits 0');
};

subtest 'the master dies (SIGKILL): the workers notice and stop' => sub {
  my $srv = start_server(app => worker_app(), workers => 2);
  my @k = wait_children($srv->pid, 2);
  $srv->wait_reports(2, 10);
  kill 'KILL', $srv->pid;
  is($srv->wait_exit(5), 'signal 9', 'master killed');
  my $alive = sub {
    my $n = 0;
    for my $pid (@k) {
      open(my $fh, '<', "/proc/$pid/stat") or next;
      $n++ if (<$fh> // '') =~ /\) [^Z] /;    # a zombie has exited
    }
    return $n;
  };
  ok(wait_for(sub { !$alive->() }, 8), 'both orphaned workers exit within seconds');
  like($srv->log, qr/the master process is gone: stopping/, '... saying why');
};

subtest 'USR1: every worker reopens the access log file' => sub {
  my $dir = File::Temp->newdir;
  my $log = "$dir/access.log";
  my $srv = start_server(app => worker_app(), workers => 2, access_log => $log);
  my @k = wait_children($srv->pid, 2);
  $srv->wait_reports(2, 10);
  # Enough connections that both workers answer some
  http_exchange($srv->port, "GET /before HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") for 1 .. 20;
  wait_for(sub { (() = slurp($log) =~ m{GET /before }g) == 20 }, 5);
  rename($log, "$log.1") or die "rename: $!";
  ok(kill('USR1', $srv->pid), 'SIGUSR1 to the master');
  ok($srv->wait_log(qr/\[worker 1 pid [0-9]+\] access log reopened/)
    && $srv->wait_log(qr/\[worker 2 pid [0-9]+\] access log reopened/), 'both workers reopened it');
  http_exchange($srv->port, "GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") for 1 .. 20;
  wait_for(sub { (() = slurp($log) =~ m{GET /after }g) == 20 }, 5);
  is_deeply([sort { $a <=> $b } children_of($srv->pid)], [sort { $a <=> $b } @k],
    'the same workers: a reopen, not a restart');
  is($srv->stop, 0, 'the master exits 0');
  is(scalar(() = slurp("$log.1") =~ m{GET /before }g), 20, 'the 20 lines before: in the rotated file');
  is(scalar(() = slurp("$log.1") =~ m{GET /after }g), 0, '... none after');
  is(scalar(() = slurp($log) =~ m{GET /after }g), 20, 'the 20 lines after: in the new file');
};

subtest 'HUP with --no-preload: the new workers load the code as it is on disk' => sub {
  my $dir = File::Temp->newdir;
  my $file = "$dir/app.pl";
  my $write = sub ($version, $broken = '') {
    open(my $fh, '>', "$file.new") or die $!;
    print {$fh} <<"APP";
use strict; use warnings; use Future::AsyncAwait;
print STDERR "app $version loaded in pid \$\$\\n";
$broken
async sub {
  my (\$scope, \$receive, \$send) = \@_;
  return if \$scope->{type} eq 'lifespan';
  await \$send->({type => 'http.response.start', status => 200, headers => [['content-type', 'text/plain']]});
  await \$send->({type => 'http.response.body', body => "$version \$\$"});
};
APP
    close $fh;
    rename("$file.new", $file) or die $!;
  };
  my $get = sub {
    my ($r) = http_exchange($_[0]->port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    return $r->[0] ? $r->[0]{body} : '';
  };
  $write->('v1');
  my $srv = start_cli(args => [$file, '--port', 0, '--workers', 2, '--no-preload', '--no-access-log']);
  ok($srv->port, 'started');
  my @old = wait_children($srv->pid, 2);
  wait_for(sub { (() = $srv->log =~ /app v1 loaded/g) == 2 }, 10);
  like($get->($srv), qr/\Av1 [0-9]+\z/, 'v1 served');
  my $master = $srv->pid;
  unlike($srv->log, qr/loaded in pid $master\b/, 'the master never loaded the application');

  $write->('v2');
  kill 'HUP', $srv->pid;
  # The v1 workers retire once their replacements are ready
  wait_for(sub {
    my @k = children_of($srv->pid);
    @k == 2 && !grep { my $p = $_; grep { $_ == $p } @old } @k;
  }, 15);
  my %seen;
  $seen{$get->($srv) =~ s/ [0-9]+\z//r}++ for 1 .. 10;
  is_deeply(\%seen, {v2 => 10}, 'after HUP: v2 served, by the new workers only');

  # New code that does not compile: the new workers fail, the old ones serve on
  $write->('v3', 'sub {');
  kill 'HUP', $srv->pid;
  ok($srv->wait_log(qr/cannot load .*app\.pl/, 10), 'a new worker reports that it cannot load the application');
  my $v = $get->($srv);
  like($v, qr/\Av2 /, 'the v2 workers still serve');
  ok(!$srv->exited, 'the master did not stop');
  is($srv->stop, 0, 'the master exits 0');
};

subtest '--no-preload: an application that cannot load stops the server at startup' => sub {
  my $dir = File::Temp->newdir;
  open(my $fh, '>', "$dir/bad.pl") or die $!;
  print {$fh} "sub {\n";
  close $fh;
  my $srv = start_cli(args => ["$dir/bad.pl", '--port', 0, '--workers', 2, '--no-preload']);
  my $rc = $srv->wait_exit(20);
  is($rc, 1, 'the master exits 1');
  like($srv->log, qr/a worker could not start the application; stopping/, 'and says why');
};

done_testing;

