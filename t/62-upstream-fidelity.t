use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use File::Temp ();
use IO::Socket::IP;
use IO::Async::Loop;
use lib 't/lib';
use PAGI::Test::Server qw(:all);
use PAGI::Server;

# What an embedding program or an operator coming from upstream PAGI::Server sees
# (issue 21): Unix socket scopes and listener specs, the checks new makes, and the
# other items below, each on the backend PAGI_SERVER_BACKEND names.

my $dir = File::Temp->newdir;
my $loop = IO::Async::Loop->new;

# An application that answers every request with what its scope says
my %seen;
my $scope_app = sub ($scope, $receive, $send) {
  return Future->done if $scope->{type} eq 'lifespan';
  $seen{$scope->{path}} = {%$scope};
  return read_body($receive)->then(sub { respond($send, 200, "path $scope->{path}") });
};

# A request made by curl, run from the loop (so that the server in this process serves it)
sub curl (@args) {
  my ($out) = $loop->run_process(command => ['curl', '-s', '-i', @args], capture => ['stdout'])->get;
  return $out;
}

subtest 'a Unix socket: no client key in its scopes; the file goes with shutdown; no port' => sub {
  my $sock = "$dir/only.sock";
  my $server = PAGI::Server->new(app => $scope_app, socket => $sock, quiet => 1, access_log => undef);
  is($server->port, undef, 'port: undef before listening (no TCP listener)');
  $loop->add($server);
  $server->listen->get;
  is($server->port, undef, '... and while listening');
  like(curl('--unix-socket', $sock, 'http://x/over-unix'), qr/\r\n\r\npath \/over-unix\z/, 'served on the socket');
  my $scope = $seen{'/over-unix'};
  ok($scope && !exists $scope->{client}, 'the scope has no client key') or diag explain $scope;
  is_deeply($scope->{server}, [$sock, undef], '... and server => [PATH, undef]');
  $server->shutdown->get;
  ok(!-e $sock, 'shutdown removed the socket file (before the server left its loop)');
  $loop->remove($server);

  # TCP next to it: the TCP scope keeps its client
  $server = PAGI::Server->new(app => $scope_app, quiet => 1, access_log => undef,
    listen => [{socket => "$dir/both.sock"}, {host => '127.0.0.1', port => 0}]);
  $loop->add($server);
  $server->listen->get;
  my $port = $server->port;
  ok($port, "port: the TCP listener's ($port)");
  curl("http://127.0.0.1:$port/over-tcp");
  is($seen{'/over-tcp'}{client}[0], '127.0.0.1', 'a TCP scope has its client');
  $server->shutdown->get;
  $loop->remove($server);
};

subtest 'listen specs: refused as upstream words it' => sub {
  my $app = sub { Future->done };
  for my $case (
    [[], qr/'listen' must be a non-empty arrayref/],
    [[{socket => "$dir/x.sock", host => '127.0.0.1'}], qr/Cannot specify both 'socket' and 'host' in a listen spec/],
    [[{socket => "$dir/x.sock", port => 80}], qr/Cannot specify both 'socket' and 'port' in a listen spec/],
    [[{host => '127.0.0.1'}], qr/TCP listen spec requires both 'host' and 'port'/],
    [[[1]], qr/Each listen spec must be a hashref/],
  ) {
    my ($listen, $re) = @$case;
    ok(!eval { PAGI::Server->new(app => $app, listen => $listen); 1 }, 'refused: ' . ($re =~ s/\(\?\^:(.*)\)/$1/r));
    like($@, $re, '... in those words');
  }
};

subtest 'log lines go through warn, in our format, with upstream\'s words for these events' => sub {
  my @warned;
  local $SIG{__WARN__} = sub { push @warned, $_[0] };
  my $said = sub ($re) { grep { /$re/ } @warned };
  $ENV{T62_LIFESPAN} = 'crash-later';
  my $app = sub ($scope, $receive, $send) {
    if ($scope->{type} eq 'lifespan') {
      my $how = $ENV{T62_LIFESPAN};
      return $receive->()->then(sub { die "the cache is unreachable\n" }) if $how eq 'raise';
      return $loop->new_future if $how eq 'hang';
      return $receive->()->then(sub { $send->({type => 'lifespan.startup.complete'}) })
        ->then(sub { $loop->delay_future(after => 0.05) })->then(sub { die "the poller crashed\n" });
    }
    return read_body($receive)->then(sub {
      return Future->done if $scope->{path} eq '/nothing';
      return $loop->delay_future(after => 0.5)->then(sub { respond($send, 200, 'slow') }) if $scope->{path} eq '/slow';
      respond($send, 200, 'ok');
    });
  };
  my $server = PAGI::Server->new(app => $app, host => '127.0.0.1', port => 0, access_log => undef, max_connections => 1);
  $loop->add($server);
  $server->listen->get;
  my $port = $server->port;
  $loop->delay_future(after => 0.2)->get;
  ok($said->(qr/\A\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] \[info\] PAGI::Server .* listening on http:\/\/127\.0\.0\.1:$port\/\n\z/),
    'the startup line is a warning, in our format ([time] [level] message)') or diag explain \@warned;
  ok($said->(qr/\[error\] Lifespan app failed after startup: the poller crashed/),
    'a lifespan that fails after startup: "Lifespan app failed after startup: ..."');
  like(curl("http://127.0.0.1:$port/nothing"), qr{\AHTTP/1\.1 500 }, 'an app that returns without a response: 500');
  ok($said->(qr/\[error\] PAGI application returned without starting a response/),
    '... logged as "PAGI application returned without starting a response"');
  # Two connections with max_connections 1: the second is refused
  my $first = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port) or die $@;
  print {$first} "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n";
  $loop->delay_future(after => 0.1)->get;
  like(curl("http://127.0.0.1:$port/"), qr{\AHTTP/1\.1 503 .*\r\nRetry-After: 5\r\n}s, 'over max_connections: 503, Retry-After');
  ok($said->(qr/\[warn\] 127\.0\.0\.1:\d+: 503 Connection rejected: at capacity \(1\/1\)/),
    '... logged as "Connection rejected: at capacity (1/1)"') or diag explain \@warned;
  close $first;
  $server->shutdown->get;
  $loop->remove($server);

  # Lifespan startup that raises (the server goes on without it), or never finishes
  @warned = ();
  $ENV{T62_LIFESPAN} = 'raise';
  $server = PAGI::Server->new(app => $app, port => 0, access_log => undef);
  $loop->add($server);
  $server->listen->get;
  ok($said->(qr/\[info\] application does not support lifespan, continuing without it \(it raised: the cache is unreachable\)/),
    'a lifespan startup that raises: its message is in the log');
  $server->shutdown->get;
  $loop->remove($server);
  $ENV{T62_LIFESPAN} = 'hang';
  $server = PAGI::Server->new(app => $app, port => 0, access_log => undef, lifespan_startup_timeout => 0.2);
  $loop->add($server);
  ok(!eval { $server->listen->get; 1 }, 'a lifespan startup that never finishes: listen fails');
  like($@, qr/Lifespan startup timed out after 0\.2 s/, '... "Lifespan startup timed out after N s"');
  $loop->remove($server);
  delete $ENV{T62_LIFESPAN};
};

subtest 'the runner\'s steps die with a message; run returns the exit status' => sub {
  require PAGI::Server::Runner;
  my $runner = PAGI::Server::Runner->new;
  ok(!eval { $runner->parse_options('--zzzzqqqq'); 1 }, 'parse_options: an unknown option dies');
  ok(!ref $@, '... with a message, not a structure');
  like($@, qr/\Aunknown option --zzzzqqqq\b[^\n]*; pagi-server --help lists every option\n\z/, '... naming it');
  $runner = PAGI::Server::Runner->new->parse_options('No::Such::Module::Here');
  ok(!eval { $runner->load_app; 1 }, 'load_app: a module that is not installed dies');
  like($@, qr/\ACannot find module 'No::Such::Module::Here' \(the application\): it is not installed/, '... in upstream\'s words');
  $runner = PAGI::Server::Runner->new->parse_options('-e', '[42]');
  ok(!eval { $runner->load_app; 1 }, 'load_app: -e code that returns no code reference dies');
  like($@, qr/\A-e code must return a coderef \(the application\), got ARRAY\n\z/, '... in upstream\'s words');
  # run: the message on one line, exit 2; --help and --version exit 0
  open(my $saved, '>&', \*STDERR) or die $!;
  my $err = "$dir/runner.err";
  open(STDERR, '>', $err) or die $!;
  my $status = PAGI::Server::Runner->run('--zzzzqqqq');
  open(STDERR, '>&', $saved) or die $!;
  is($status, 2, 'run: exit status 2');
  like(slurp($err), qr/\Apagi-server: unknown option --zzzzqqqq\b[^\n]*\n\z/, '... the message on stderr, one line');
  open(my $out, '>', \my $help) or die $!;
  my $old = select $out;
  $status = PAGI::Server::Runner->run('--help');
  select $old;
  is($status, 0, 'run --help: 0');
};

subtest 'the Server field: PAGI::Server/VERSION as upstream sends it, or ours, or none' => sub {
  for my $case ([[], "PAGI::Server/$PAGI::Server::VERSION"], [[server_header => 'Example/2'], 'Example/2'],
    [[server_header => ''], undef], [[server_header => undef], undef]) {
    my ($opt, $want) = @$case;
    my $server = PAGI::Server->new(app => $scope_app, host => '127.0.0.1', port => 0, quiet => 1, access_log => undef, @$opt);
    $loop->add($server);
    $server->listen->get;
    my $head = curl('http://127.0.0.1:' . $server->port . '/h');
    my ($got) = $head =~ /^Server: ([^\r]*)\r$/m;
    is($got, $want, (@$opt ? "server_header => " . ($opt->[1] // 'undef') : 'by default') . ': ' . ($want // 'no Server field'));
    $server->shutdown->get;
    $loop->remove($server);
  }
  ok(!eval { PAGI::Server->new(app => $scope_app, server_header => "x\r\nSet-Cookie: a=b"); 1 }, 'a value with CR LF is refused');
  like($@, qr/server_header is not a valid field value/, '... by new');
};

subtest 'extensions => {fullflush => {}}: advertised, and http.fullflush writes at once' => sub {
  my $flag = "$dir/go-on";
  # /stream: a first part, flushed, then the app holds the server (a blocking wait)
  # until the client, which has the first part only if it was flushed, says go on
  my $app = sub ($scope, $receive, $send) {
    return Future->done if $scope->{type} eq 'lifespan';
    if ($scope->{type} eq 'websocket') {
      report(case => 'ws', ext => [sort keys %{$scope->{extensions}}]);
      return $send->({type => 'websocket.close'});
    }
    my $ext = [sort keys %{$scope->{extensions}}];
    if ($scope->{type} eq 'sse') {
      return $send->({type => 'sse.start'})->then(sub { attempt($send, {type => 'http.fullflush'}) })->then(sub ($r) {
        report(case => 'sse', ext => $ext, flush => $r);
        $send->({type => 'sse.send', data => 'one'});
      });
    }
    return read_body($receive)->then(sub {
      return $send->({type => 'http.response.start', status => 200, headers => []})
        ->then(sub { $send->({type => 'http.response.body', body => 'first ', more => 1}) })
        ->then(sub { attempt($send, {type => 'http.fullflush'}) })
        ->then(sub ($r) {
          report(case => 'http', ext => $ext, flush => $r);
          if ($scope->{path} eq '/stream' && $r eq 'ok') {
            my $until = time + 5;
            select(undef, undef, undef, 0.01) until -e $flag || time > $until;
          }
          $send->({type => 'http.response.body', body => 'second'});
        });
    });
  };
  for my $on (0, 1) {
    my $srv = start_server(app => $app, $on ? (extensions => {fullflush => {}}) : ());
    ok($srv->port, ($on ? 'with' : 'without') . ' fullflush: listening') or return diag $srv->log;
    my ($r) = http_exchange($srv->port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    my ($http) = $srv->reports_of('http');
    if ($on) {
      is_deeply($http->{ext}, ['fullflush'], 'the http scope advertises fullflush');
      is($http->{flush}, 'ok', 'http.fullflush: done');
      is($r->[0]{body}, 'first second', '... and the response is whole');
      unlink $flag;
      my $c = http_connect($srv->port, timeout => 5);
      $c->send("GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
      ok(wait_for(sub { $c->pause(0.02); $c->buffer =~ /first / }, 4),
        'the part before http.fullflush reached the client while the app held the server');
      open(my $fh, '>', $flag) or die $!;
      close $fh;
      my ($whole) = $c->read_responses(timeout => 5);
      is($whole && $whole->{body}, 'first second', '... then the rest');
      $c->send("GET / HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n");
      my ($sse) = $srv->reports_of('sse');
      is_deeply($sse->{ext}, ['fullflush'], 'an sse scope advertises it too');
      is($sse->{flush}, 'ok', '... and takes http.fullflush');
      require PAGI::Test::WebSocket;
      my ($ws) = PAGI::Test::WebSocket::ws_connect($srv->port, path => '/ws');
      my ($rep) = $srv->reports_of('ws');
      is_deeply($rep->{ext}, ['websocket.http.response'], 'a websocket scope does not (its events are not HTTP\'s)');
    }
    else {
      is_deeply($http->{ext}, [], 'no extension advertised');
      like($http->{flush}, qr/\Aerror: unsupported event type 'http\.fullflush' \(the extension is not advertised\)/,
        'http.fullflush fails, as the specification says');
      is($r->[0]{body}, 'first second', '... and the response goes on');
    }
    is($srv->stop, 0, 'exit 0');
  }
  for my $bad ([{tls => {}}, qr/extensions tls is advertised by the server itself/],
    [{gzip => {}}, qr/extensions gzip is not an extension this server implements \(it implements fullflush\)/],
    [[], qr/extensions must be a hash reference/]) {
    ok(!eval { PAGI::Server->new(app => sub { }, extensions => $bad->[0]); 1 }, 'extensions => ' . (ref $bad->[0] eq 'HASH' ? join(',', keys %{$bad->[0]}) : '[]') . ': refused');
    like($@, $bad->[1], '... saying why');
  }
};

subtest 'PAGI::Server::EventValidator: upstream\'s functions, the server\'s own checks' => sub {
  require PAGI::Server::EventValidator;
  my $v = 'PAGI::Server::EventValidator';
  ok($v->can('validate_http_send')->({type => 'http.response.start', status => 200, headers => [['a', 'b']]}),
    'validate_http_send: a good start returns true');
  ok(!eval { $v->can('validate_http_send')->({type => 'http.response.start', status => 'OK'}); 1 }, 'a bad status croaks');
  like($@, qr/\Ahttp\.response\.start: invalid status at /, '... with the message a failed send carries');
  ok(!eval { $v->can('validate_websocket_send')->({type => 'websocket.send', text => 'a', bytes => 'b'}); 1 },
    'validate_websocket_send: text and bytes croaks');
  like($@, qr/\Awebsocket\.send: only one of bytes and text/, '... saying so');
  ok($v->can('validate_sse_send')->({type => 'sse.send', data => "two\nlines", event => 'e'}), 'validate_sse_send: a good send');
  ok(!eval { $v->can('validate_sse_send')->({type => 'sse.send', data => 'x', id => "a\nb"}); 1 }, 'an id with a newline croaks');
  ok(!eval { $v->can('validate_http_send')->({type => 'websocket.send', text => 'x'}); 1 },
    'an event type the scope does not have croaks (the server fails it too)');
  like($@, qr/\Aunknown event type 'websocket\.send' for an http scope/, '... naming it');

  # The server fails exactly these sends, with exactly these messages: each scope's
  # events are sent by an app, and each result is compared with send_error's
  my $wide = "\x{263a}";
  my %events = (
    http => [{type => 'http.response.start'}, {type => 'http.response.start', status => 'abc'},
      {type => 'http.response.start', status => 99}, {type => 'http.response.start', status => 200, headers => 'x'},
      {type => 'http.response.start', status => 200, headers => [['Bad Name', 'v']]},
      {type => 'http.response.start', status => 200, headers => [['X', "a\r\nb"]]},
      {type => 'http.response.start', status => 200, trailers => 1},
      {type => 'http.response.body', body => $wide}, {type => 'http.response.body', body => 'a', file => '/etc/passwd'},
      {type => 'http.response.body', fh => 'not a handle'}, {type => 'http.response.body', file => '/etc/passwd', offset => -1},
      {type => 'http.response.body', body => 'ok', more => 1},
      {type => 'http.response.trailers', headers => [['X', "a\nb"]]}, {type => 'http.response.trailers', headers => 'x'},
      {type => 'http.nope'}, {type => 'http.response.trailers', headers => [['X-Done', '1']]}],
    websocket => [{type => 'websocket.accept', headers => [['X', "a\rb"]]}, {type => 'websocket.accept', subprotocol => "a\nb"},
      {type => 'websocket.accept'}, {type => 'websocket.send'}, {type => 'websocket.send', bytes => $wide},
      {type => 'websocket.send', bytes => 'b', text => 't'}, {type => 'websocket.send', bytes => 'b'},
      {type => 'websocket.keepalive', interval => 'often'}, {type => 'websocket.keepalive', interval => 5, timeout => -1},
      {type => 'websocket.close', code => 1005}, {type => 'websocket.close', code => 'x'},
      {type => 'websocket.close', reason => 'r' x 124}, {type => 'websocket.frob'}, {type => 'websocket.close', code => 4000}],
    sse => [{type => 'sse.start', status => 'x'}, {type => 'sse.start', headers => [['X', "a\0"]]}, {type => 'sse.start'},
      {type => 'sse.send'}, {type => 'sse.send', data => []}, {type => 'sse.send', data => 'x', event => "a\nb"},
      {type => 'sse.send', data => 'x', retry => 'soon'}, {type => 'sse.comment'}, {type => 'sse.keepalive', interval => -1},
      {type => 'http.response.body', body => 'x'}, {type => 'sse.send', data => 'fine'}],
  );
  my $app = sub ($scope, $receive, $send) {
    return Future->done if $scope->{type} eq 'lifespan';
    my @events = @{$events{$scope->{type}}};
    my @results;
    my $next;
    $next = sub {
      return Future->done(report(case => $scope->{type}, results => \@results)) unless @events;
      attempt($send, shift @events)->then(sub ($r) { push @results, $r; $next->() });
    };
    return ($scope->{type} eq 'websocket' ? $receive->() : Future->done)->then($next);
  };
  my $srv = start_server(app => $app);
  ok($srv->port, 'a server for the events') or return diag $srv->log;
  http_exchange($srv->port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
  http_exchange($srv->port, "GET / HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n", timeout => 1);
  require PAGI::Test::WebSocket;
  my ($ws) = PAGI::Test::WebSocket::ws_connect($srv->port, path => '/ws');
  for my $scope (qw(http websocket sse)) {
    my ($r) = $srv->reports_of($scope);
    my @want = map { my $e = PAGI::Server::EventValidator::send_error($scope, $_); defined $e ? "error: $e" : 'ok' }
      @{$events{$scope}};
    is_deeply($r && $r->{results}, \@want, "$scope: every send fails as send_error says, with its message, and the others succeed")
      or diag explain $r;
  }
  is($srv->stop, 0, 'exit 0');
};

subtest 'new checks loop_type and the TLS files at once' => sub {
  my $app = sub { Future->done };
  ok(!eval { PAGI::Server->new(app => $app, loop_type => 'Select"; rm -rf x') ; 1 }, 'a loop_type that is no loop name');
  like($@, qr/\APAGI::Server->new: Invalid loop_type 'Select"; rm -rf x'/, '... dies in new, in upstream\'s words');
  ok(!eval { PAGI::Server->new(app => $app, loop_type => 'NoSuchLoopHere'); 1 }, 'a loop that is not installed');
  like($@, qr/IO::Async::Loop::NoSuchLoopHere, which is not installed; installed loops: .*Select/,
    '... dies in new, naming the installed loops');
  ok(eval { PAGI::Server->new(app => $app, loop_type => 'Select'); 1 }, 'an installed loop is taken') or diag $@;

  my $pem = "$dir/some.pem";
  open(my $fh, '>', $pem) or die $!;
  close $fh;
  for my $case ([{cert_file => "$dir/gone.pem"}, qr/SSL certificate file not found: \Q$dir\E\/gone\.pem/],
    [{cert_file => $pem, key_file => "$dir/gone.key"}, qr/SSL key file not found: \Q$dir\E\/gone\.key/],
    [{ca_file => "$dir/gone-ca.pem"}, qr/SSL CA file not found: \Q$dir\E\/gone-ca\.pem/],
    [{cert_file => $pem}, qr/ssl_cert and ssl_key go together/]) {
    my ($ssl, $re) = @$case;
    my $what = join ', ', map { "$_ => " . ($ssl->{$_} eq $pem ? 'a file' : 'a missing file') } sort keys %$ssl;
    ok(!eval { PAGI::Server->new(app => $app, ssl => $ssl); 1 }, "ssl => {$what}: new dies");
    like($@, $re, '... saying what is wrong');
  }
};

done_testing;
