use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use lib 't/lib';
use File::Temp ();
use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);
use PAGI::Test::Server qw(start_server start_cli http_exchange parse_response wait_for ROOT);
use PAGI::Test::Load qw(run_load worker_app);

# Listening on a unix socket (socket => PATH, listen => ['unix:PATH']) and on several
# addresses at once; scope server => [PATH, undef] and no client key on unix sockets.

my $dir = File::Temp->newdir;

my $app = sub ($scope, $receive, $send) {
  return Future->fail("no lifespan\n") if $scope->{type} eq 'lifespan';
  PAGI::Test::Server::report(server => $scope->{server}, client => $scope->{client},
    has_client => exists $scope->{client} ? 1 : 0, path => $scope->{path});
  $send->({type => 'http.response.start', status => 200, headers => [['content-type', 'text/plain']]})
    ->then(sub { $send->({type => 'http.response.body', body => "ok $scope->{path}\n"}) });
};

sub unix_get ($path, $target = '/u') {
  my $s = IO::Socket::UNIX->new(Peer => $path, Type => SOCK_STREAM) or return "connect: $!";
  print {$s} "GET $target HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  local $/;
  my $buf = <$s> // '';
  my ($r) = eval { parse_response($buf, 0, closed => 1) };
  return $r // "bad response: $buf";
}

subtest 'socket => PATH, next to TCP' => sub {
  my $path = "$dir/a.sock";
  my $srv = start_server(app => $app, socket => $path);
  ok(-S $path, 'the socket file exists');
  my $r = unix_get($path);
  is(ref $r && $r->{body}, "ok /u\n", 'served over the unix socket') or diag explain $r;
  my ($s) = $srv->wait_reports(1, 5);
  is_deeply($s->{server}, [$path, undef], 'scope server is [PATH, undef]');
  is($s->{has_client}, 0, 'no client key (a Unix socket has no peer address)');
  my ($res) = http_exchange($srv->port, "GET /t HTTP/1.1\r\nHost: x\r\n\r\n");
  is($res->[0]{body}, "ok /t\n", 'TCP (host/port) still served');
  my @r = $srv->wait_reports(2, 5);
  is($r[1]{server}[0], '127.0.0.1', 'TCP scope server is the address');
  like($srv->log, qr{listening on unix:\Q$path\E}, 'the unix listener is logged');
  is($srv->stop, 0, 'exits 0');
  ok(!-e $path, 'the socket file is removed at exit');
};

subtest 'a stale socket file is replaced; a live one is an error' => sub {
  my $path = "$dir/stale.sock";
  {
    my $old = IO::Socket::UNIX->new(Local => $path, Type => SOCK_STREAM, Listen => 1) or die $!;
  }
  ok(-S $path, 'a stale socket file (nobody listening)');
  my $srv = start_server(app => $app, socket => $path);
  ok($srv->port, 'the server starts anyway');
  my $r = unix_get($path);
  is(ref $r && $r->{status}, 200, 'and serves on it');
  my $second = start_server(app => $app, socket => $path);
  is($second->wait_exit(10), 1, 'a second server on a live socket exits 1');
  like($second->log, qr/another server is listening there/, '... saying why');
  ok(-S $path, 'the live socket file is left alone');
  is($srv->stop, 0, 'the first exits 0');
  my $file = "$dir/plain-file";
  open(my $fh, '>', $file) or die;
  close $fh;
  my $third = start_server(app => $app, socket => $file);
  is($third->wait_exit(10), 1, 'a regular file at the path: exits 1');
  ok(-f $file, 'the file is not removed');
};

subtest 'listen => [unix:PATH, HOST:PORT, ...] with workers' => sub {
  my $path = "$dir/w.sock";
  my $probe = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0, Listen => 1);
  my $port2 = $probe->sockport;
  close $probe;
  my $srv = start_server(app => worker_app(), workers => 2,
    listen => ["unix:$path", "127.0.0.1:$port2"]);
  ok($srv->port, 'started');
  wait_for(sub { -S $path }, 5);
  my $r = unix_get($path, '/r/1');
  is(ref $r && $r->{body}, "ok /r/1\n", 'unix socket served by a worker');
  my ($res) = http_exchange($port2, "GET /r/2 HTTP/1.1\r\nHost: x\r\n\r\n");
  is($res->[0]{body}, "ok /r/2\n", "listen 127.0.0.1:$port2 served");
  ($res) = http_exchange($srv->port, "GET /r/3 HTTP/1.1\r\nHost: x\r\n\r\n");
  is($res->[0]{body}, "ok /r/3\n", 'host/port served');
  my $load = run_load(unix => $path, conns => 20, requests => 1000, procs => 2);
  is($load->{ok}, 1000, '1000 requests over the unix socket') or diag explain $load->{error_list};
  note 'served by: ' . join ', ', map { "$_ x$load->{pids}{$_}" } sort keys %{$load->{pids}};
  is($srv->stop, 0, 'the master exits 0');
  ok(!-e $path, 'the master removes the socket file');
};

subtest 'bin/pagi-server --socket and --listen' => sub {
  my $path = "$dir/cli.sock";
  my $appfile = "$dir/app.pl";
  open(my $fh, '>', $appfile) or die;
  print {$fh} <<'APP';
use strict; use warnings; use Future;
sub { my ($scope, $receive, $send) = @_;
  return Future->fail("no\n") if $scope->{type} eq 'lifespan';
  $send->({type => 'http.response.start', status => 200, headers => []})
    ->then(sub { $send->({type => 'http.response.body', body => "cli\n"}) }) };
APP
  close $fh;
  my $cli = start_cli(args => ['--socket', $path, '--listen', '127.0.0.1:0', '--no-access-log',
    '--workers', 2, $appfile]);
  ok($cli->port, 'the CLI logs its TCP listener') or diag $cli->log;
  wait_for(sub { -S $path }, 5);
  my $r = unix_get($path);
  is(ref $r && $r->{body}, "cli\n", '--socket serves');
  my ($res) = http_exchange($cli->port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  is($res->[0]{body}, "cli\n", '--listen serves');
  is($cli->stop, 0, 'exits 0');
  ok(!-e $path, 'socket file removed');
};

done_testing;
