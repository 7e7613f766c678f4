use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use File::Temp ();
use IO::Socket::IP;
use IO::Socket::UNIX;
use Socket qw(SOCK_DGRAM);
use lib 't/lib';
use PAGI::Test::Server qw(start_cli start_command run_cli http_exchange wait_for slurp ROOT);
use PAGI::Test::Load qw(run_load children_of);

# systemd: socket activation through systemd's own systemd-socket-activate (which
# binds, sets LISTEN_FDS/LISTEN_PID and execs bin/pagi-server in its place on the
# first connection), TCP and Unix sockets, one process and --workers; LISTEN_* for
# another process, and a descriptor that is not a socket; sd_notify (Type=notify).

my ($ACTIVATE) = grep { -x } map { "$_/systemd-socket-activate" } split(/:/, $ENV{PATH}), '/usr/bin', '/bin';
plan skip_all => 'systemd-socket-activate is not installed (Debian: systemd; script/install-deps)' unless $ACTIVATE;

my $dir = File::Temp->newdir;
chmod 0755, "$dir";
my $APP = "$dir/app.pl";
open(my $fh, '>', $APP) or die $!;
print {$fh} <<'APP';
use strict; use warnings; use experimental 'signatures'; use Future;
sub ($scope, $receive, $send) {
  return Future->done if $scope->{type} eq 'lifespan';
  my $body = $scope->{path} eq '/env' ? join(',', map { "$_=" . ($ENV{$_} // 'unset') } qw(LISTEN_FDS LISTEN_PID LISTEN_FDNAMES))
    : "ok $scope->{path}\n";
  $send->({type => 'http.response.start', status => 200, headers => [['content-type', 'text/plain'], ['x-pid', $$]]})
    ->then(sub { $send->({type => 'http.response.body', body => $body}) });
};
APP
close $fh;

sub free_port () { IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0, Listen => 1)->sockport }

sub listening_on ($port) {
  my $hex = sprintf '%04X', $port;
  my $n = 0;
  for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
    open(my $fh, '<', $f) or next;
    $n += grep { /\A\s*\d+: [0-9A-F]+:$hex [0-9A-F]+:0000 0A / } <$fh>;
  }
  return $n;
}

sub get ($port, $path, $timeout = 5) {
  my ($r) = eval { http_exchange($port, "GET $path HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", timeout => $timeout) };
  return $r && $r->[0] ? $r->[0] : undef;
}

sub get_unix ($path, $url) {
  my $s = IO::Socket::UNIX->new(Peer => $path) or return undef;
  print {$s} "GET $url HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  local $/;
  my $raw = <$s> // '';
  my ($r) = eval { PAGI::Test::Server::parse_response($raw, 0, closed => 1) };
  return $r;
}

# systemd-socket-activate passes only the variables it is told to (-E)
sub activate (@args) {
  my @listen = map { ('-l', $_) } @{shift @args};
  my @env = map { ('-E', "$_=$ENV{$_}") } grep { defined $ENV{$_} } qw(PAGI_SERVER_BACKEND PERL5LIB);
  my $run = start_command(command => [$ACTIVATE, @env, @listen, $^X, ROOT . '/bin/pagi-server', @args]);
  wait_for(sub { (() = $run->log =~ /Listening on/g) == @listen / 2 }, 5);
  return $run;
}

subtest 'systemd-socket-activate -l 127.0.0.1:PORT -l PATH bin/pagi-server app.pl: one process' => sub {
  my $port = free_port();
  my $other = free_port();
  my $sock = "$dir/activated.sock";
  my $run = activate([ "127.0.0.1:$port", $sock ], $APP, '--port', $other, '--no-access-log');
  ok($run->wait_log(qr/Listening on \Q$sock\E as 4/), 'systemd-socket-activate listens on both (fds 3 and 4)')
    or return diag $run->log;
  my $r = get($port, '/first', 15);
  is($r && $r->{body}, "ok /first\n", 'the first connection starts the server, which answers it');
  is($r && $r->{h}{'x-pid'}, $run->pid, '... in the process systemd-socket-activate became');
  like($run->log, qr/socket activation: serving the 2 socket\(s\) systemd passed \(not the addresses given/,
    'the server says it serves the sockets it was given');
  like($run->log, qr{listening on http://127\.0\.0\.1:$port/ \(socket from systemd\)}, '... the TCP one');
  like($run->log, qr{listening on unix:\Q$sock\E \(socket from systemd\)}, '... and the Unix one');
  my $u = get_unix($sock, '/unix');
  is($u && $u->{body}, "ok /unix\n", 'served on the Unix socket');
  is(listening_on($other), 0, "it did not bind --port $other itself");
  is(get($port, '/env')->{body}, 'LISTEN_FDS=unset,LISTEN_PID=unset,LISTEN_FDNAMES=unset',
    'LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES are gone from its environment');
  my $res = run_load(port => $port, conns => 10, requests => 500, procs => 1);
  is($res->{ok}, 500, '500 requests on keep-alive connections') or diag explain $res->{error_list};
  is($run->stop, 0, 'SIGTERM: exit 0');
  ok(-S $sock, 'the Unix socket file is systemd\'s: left in place');
};

subtest 'systemd-socket-activate ... --workers 2' => sub {
  my $port = free_port();
  my $other = free_port();
  my $run = activate([ "127.0.0.1:$port" ], $APP, '--workers', 2, '--port', $other, '--no-access-log');
  my $r = get($port, '/first', 15);
  is($r && $r->{body}, "ok /first\n", 'the first connection is answered') or return diag $run->log;
  my @kids;
  wait_for(sub { @kids = children_of($run->pid); @kids == 2 }, 10);
  is(scalar @kids, 2, 'two workers under the master systemd-socket-activate started');
  # (which worker accepts a new connection is up to the kernel: ask until both have)
  my %by;
  wait_for(sub { my $r = get($port, '/r'); $by{$r->{h}{'x-pid'}}++ if $r; keys %by == 2 }, 15);
  is_deeply([sort { $a <=> $b } keys %by], \@kids, 'both workers answer on the socket systemd passed');
  my $res = run_load(port => $port, conns => 20, requests => 1000, procs => 2);
  is($res->{ok}, 1000, '1000 requests on keep-alive connections answered') or diag explain $res->{error_list};
  is(get($port, '/env')->{body}, 'LISTEN_FDS=unset,LISTEN_PID=unset,LISTEN_FDNAMES=unset',
    'the workers do not see LISTEN_*');
  is(listening_on($other), 0, "nothing was bound to --port $other");
  is($run->stop, 0, 'SIGTERM: the master exits 0');
};

subtest 'systemd-socket-activate ... -D --pid: the daemon gets the sockets' => sub {
  my $port = free_port();
  my $pidfile = "$dir/daemon.pid";
  my $run = activate([ "127.0.0.1:$port" ], $APP, '-D', '--pid', $pidfile, '--no-access-log');
  my $r = get($port, '/first', 15);
  is($r && $r->{body}, "ok /first\n", 'the first connection is answered');
  is($run->wait_exit(10), 0, 'the process systemd-socket-activate became returns 0 once the daemon listens');
  my $daemon = slurp($pidfile) =~ /\A([0-9]+)\n\z/ ? $1 : 0;
  ok($daemon && $daemon != $run->pid, "the daemon ($daemon) is another process");
  is($r && $r->{h}{'x-pid'}, $daemon, '... and it served the request');
  kill 'TERM', $daemon;
  ok(wait_for(sub { !kill 0, $daemon }, 10), 'SIGTERM stops it');
};

subtest 'LISTEN_* not meant for this process, or naming something that is not a socket' => sub {
  my $srv = start_cli(args => [$APP, '--port', 0, '--no-access-log'], env => {LISTEN_FDS => 1, LISTEN_PID => 1});
  ok($srv->port, 'LISTEN_PID of another process: the server binds its own address') or return diag $srv->log;
  unlike($srv->log, qr/socket activation/, '... and says nothing of systemd');
  is(get($srv->port, '/env')->{body}, 'LISTEN_FDS=unset,LISTEN_PID=unset,LISTEN_FDNAMES=unset',
    '... but removes the variables all the same');
  is($srv->stop, 0, 'exit 0');
  # fd 3 is a file: LISTEN_PID is set by the shell that execs the server
  my $run = start_command(command => ['/bin/sh', '-c', 'export LISTEN_PID=$$ LISTEN_FDS=1; exec "$@" 3</dev/null',
    'sh', $^X, ROOT . '/bin/pagi-server', $APP, '--port', 0]);
  is($run->wait_exit(15), 1, 'LISTEN_FDS naming a descriptor that is not a socket: exit 1');
  like($run->log, qr/fd 3, passed by systemd \(LISTEN_FDS\), is not a socket/, '... saying so');
};

subtest 'sd_notify: READY=1 and MAINPID (Type=notify), and MAINPID again after a USR2 upgrade' => sub {
  my $path = "$dir/notify.sock";
  my $notify = IO::Socket::UNIX->new(Local => $path, Type => SOCK_DGRAM) or die "notify socket: $!";
  my $read = sub ($timeout) {
    my $msg;
    wait_for(sub { vec(my $rin = '', fileno $notify, 1) = 1; select(my $r = $rin, undef, undef, 0) > 0
      && defined recv($notify, $msg, 4096, 0) }, $timeout);
    return $msg;
  };
  my $srv = start_cli(args => [$APP, '--port', 0, '--workers', 2, '--no-access-log'], env => {NOTIFY_SOCKET => $path});
  ok($srv->port, 'started') or return diag $srv->log;
  my $msg = $read->(10);
  is($msg, "READY=1\nMAINPID=${\ $srv->pid}\n", 'READY=1 once the workers serve, with the master\'s pid');
  kill 'USR2', $srv->pid;
  $msg = $read->(15);
  my ($new) = ($msg // '') =~ /\AMAINPID=([0-9]+)\nREADY=1\n\z/;
  ok($new && $new != $srv->pid, "after USR2: MAINPID of the new master ($new), then READY=1")
    or diag $msg;
  is($srv->wait_exit(15), 0, 'the old master exits 0');
  kill 'TERM', $new if $new;
  ok(wait_for(sub { !$new || !-e "/proc/$new" || slurp("/proc/$new/stat") =~ /\) Z / }, 15), 'the new master stops on TERM');
};

done_testing;
