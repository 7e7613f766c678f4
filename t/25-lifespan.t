use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use Future::AsyncAwait;
use Time::HiRes ();
use lib 't/lib';
use PAGI::Test::Server qw(:all);

# Lifespan: startup before listening, state copied into request scopes, a failed
# startup stops the server, apps without lifespan support still start, shutdown runs
# on SIGTERM.

# An app whose lifespan behaviour is chosen by $mode
sub app_for ($mode) {
  return async sub ($scope, $receive, $send) {
    if ($scope->{type} eq 'lifespan') {
      report(lifespan_scope => {type => $scope->{type}, pagi => $scope->{pagi},
        state_is_hash => ref $scope->{state} eq 'HASH' ? 1 : 0, keys => [sort keys %$scope]})
        if $mode eq 'normal';
      die "no lifespan here\n" if $mode eq 'die';
      return if $mode eq 'return';
      my $ev = await $receive->();
      report(event => $ev->{type});
      if ($mode eq 'fail') {
        await $send->({type => 'lifespan.startup.failed', message => 'database unreachable'});
        return;
      }
      await delay(0.5) if $mode eq 'slow';
      $scope->{state}{db} = 'connected';
      $scope->{state}{config} = {name => 'test'};
      await $send->({type => 'lifespan.startup.complete'});
      my $twice = eval { await $send->({type => 'lifespan.startup.complete'}); 1 };
      report(second_complete => $twice ? 'ok' : 'failed');
      die "crashed after startup\n" if $mode eq 'crash';
      $ev = await $receive->();
      report(event => $ev->{type});
      if ($mode eq 'shutdown-failed') {
        await $send->({type => 'lifespan.shutdown.failed', message => 'could not flush'});
        return;
      }
      await delay(0.2);
      report(shutdown => 'done');
      await $send->({type => 'lifespan.shutdown.complete'});
      return;
    }
    my $state = $scope->{state} // {};
    report(request_state => {%$state});
    $state->{db} = 'changed by a request';
    await respond($send, 200, "db=" . ($state->{db} // 'none'));
  };
}

sub get_ok ($srv, $name) {
  my ($r) = http_exchange($srv->port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
  is($r->[0] && $r->[0]{status}, 200, $name);
}

subtest 'startup.complete, then serving; state copied into requests; shutdown on SIGTERM' => sub {
  my $srv = start_server(app => app_for('normal'));
  ok($srv->port, 'the server listens after startup.complete');
  my @rep = $srv->reports;
  is_deeply($rep[0]{lifespan_scope}{pagi}, {version => '0.3', spec_version => '0.3', is_worker => 0, worker_num => undef},
    'lifespan scope: pagi version, spec_version, is_worker 0, worker_num undef');
  is($rep[0]{lifespan_scope}{type}, 'lifespan', 'lifespan scope type');
  is($rep[0]{lifespan_scope}{state_is_hash}, 1, 'lifespan scope has a state hash');
  is($rep[1]{event}, 'lifespan.startup', 'the first event is lifespan.startup');
  like($srv->log, qr/PAGI-TEST \{"event":"lifespan.startup"\}.*listening on/s, 'startup ran before listening');
  get_ok($srv, 'a request is served');
  get_ok($srv, 'a second request is served');
  @rep = grep { $_->{request_state} } $srv->wait_reports(5);
  is_deeply($rep[0]{request_state}, {db => 'connected', config => {name => 'test'}},
    'state set during startup is in the request scope');
  is_deeply($rep[1]{request_state}, {db => 'connected', config => {name => 'test'}},
    "a request's change to its copy does not reach the next request");
  ok(grep({ ($_->{second_complete} // '') eq 'failed' } $srv->reports), 'a second startup.complete fails');
  is($srv->stop, 0, 'SIGTERM: exit status 0');
  my @events = map { $_->{event} // () } $srv->reports;
  is_deeply(\@events, ['lifespan.startup', 'lifespan.shutdown'], 'lifespan.shutdown was received');
  like($srv->log, qr/"shutdown":"done".*stopped after/s, 'shutdown.complete was awaited before stopping');
};

subtest 'slow startup: not listening until startup.complete' => sub {
  my $t0 = Time::HiRes::time();
  my $srv = start_server(app => app_for('slow'));
  my $took = Time::HiRes::time() - $t0;
  ok($srv->port, 'listening');
  cmp_ok($took, '>=', 0.45, sprintf('only after the app completed startup (%.2fs)', $took));
  get_ok($srv, 'served');
  is($srv->stop, 0, 'exit 0');
};

subtest 'startup.failed: no listening, the message is logged, non-zero exit' => sub {
  my $srv = start_server(app => app_for('fail'));
  is($srv->port, undef, 'the server never listened');
  my $status = $srv->wait_exit(10);
  isnt($status, 0, "run() returned non-zero (exit $status)");
  is($status, 1, 'exit status 1');
  like($srv->log, qr/\[error\] .*database unreachable/, 'the failure message is logged');
  is_deeply([$srv->log_grep(qr/listening on/)], [], 'no listening line');
};

subtest 'an app that dies or returns on lifespan: the server starts without it' => sub {
  for my $mode (qw(die return)) {
    my $srv = start_server(app => app_for($mode));
    ok($srv->port, "$mode: the server listens");
    like($srv->log, qr/\[info\] application does not support lifespan/, "$mode: logged at info");
    get_ok($srv, "$mode: requests are served");
    my ($rep) = grep { $_->{request_state} } $srv->wait_reports(1);
    is_deeply($rep->{request_state}, {}, "$mode: request state is an empty copy");
    my $t0 = Time::HiRes::time();
    is($srv->stop, 0, "$mode: SIGTERM: exit 0");
    cmp_ok(Time::HiRes::time() - $t0, '<', 5, "$mode: promptly (no lifespan shutdown to wait for)");
  }
};

subtest 'an app that crashes after startup.complete: logged, serving goes on' => sub {
  my $srv = start_server(app => app_for('crash'));
  ok($srv->port, 'listening');
  ok($srv->wait_log(qr/\[error\] Lifespan app failed after startup: crashed after startup/), 'the crash is logged as an error');
  get_ok($srv, 'requests are still served');
  my $t0 = Time::HiRes::time();
  is($srv->stop, 0, 'SIGTERM: exit 0');
  cmp_ok(Time::HiRes::time() - $t0, '<', 5, 'promptly: no wait for a shutdown.complete that cannot come');
};

subtest 'shutdown.failed: logged, exit 0' => sub {
  my $srv = start_server(app => app_for('shutdown-failed'));
  get_ok($srv, 'served');
  is($srv->stop, 0, 'exit 0');
  like($srv->log, qr/\[error\] lifespan shutdown failed: could not flush/, 'the message is logged');
};

done_testing;
