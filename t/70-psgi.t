use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use File::Spec;
use File::Temp ();
use JSON::PP ();
use lib 't/lib';
use PAGI::Test::Server qw(:all);
use PAGI::Test::WebSocket qw(ws_request);

# PSGI applications on PAGI::Server: Plack's own server conformance suite
# (Plack::Test::Suite, what Starman, Twiggy and Feersum run), then what it does not
# cover: the $env in detail, request bodies (chunked, large, read in pieces), the
# streaming and delayed responses, file bodies, HEAD, keep-alive, errors, upgrade and
# event-stream requests reaching the app as plain HTTP, root_path, and harakiri.

BEGIN {
  eval { require Plack::Test::Suite; require Plack::Util; 1 }
    or plan skip_all => 'Plack (libplack-perl) is not installed';
}

subtest 'Plack::Test::Suite->run_server_tests' => sub {
  # What run_server_tests('PAGI::Server') does (through Plack::Loader, so through
  # Plack::Handler::PAGI::Server, with Plack's Lint), with the server log kept out of
  # the test output: one of the suite's apps dies on purpose, and that is logged
  Plack::Test::Suite->run_server_tests(sub ($port, $app) {
    open(STDERR, '>', File::Spec->devnull) or die "stderr: $!";
    require Plack::Loader;
    require Plack::Middleware::Lint;
    Plack::Loader->load('PAGI::Server', port => $port, host => '127.0.0.1')
      ->run(Plack::Middleware::Lint->wrap($app));
  });
};

my $JSON = JSON::PP->new->canonical->allow_nonref;
my $tmp = File::Temp->new;
print {$tmp} 'f' x 100_000;
close $tmp;

my %route;
my $psgi = sub ($env) {
  my ($first) = $env->{PATH_INFO} =~ m{\A(/[^/]*)};
  my $h = $route{$first // ''} or return [404, ['Content-Type' => 'text/plain'], ['no route']];
  return $h->($env);
};

# The $env, as JSON (references shown by type)
$route{'/env'} = sub ($env) {
  my %e = map { $_ => (ref $env->{$_} ? ref $env->{$_} : $env->{$_}) } keys %$env;
  $e{'psgi.version'} = $env->{'psgi.version'};
  $e{path_bytes} = [map { ord } split //, $env->{PATH_INFO}];
  return [200, ['Content-Type' => 'application/json'], [$JSON->encode(\%e)]];
};
# Echoes the body: read in pieces of 1000, then again after a seek
$route{'/echo'} = sub ($env) {
  my $in = $env->{'psgi.input'};
  my ($body, $buf) = ('');
  while (my $n = $in->read($buf, 1000)) { $body .= $buf }
  $in->seek(0, 0);
  $in->read(my $again, 5);
  return [200, ['Content-Type' => 'text/plain', 'X-Again' => $again, 'X-Length' => $env->{CONTENT_LENGTH}],
    [length($body) . ':' . substr($body, 0, 20)]];
};
# A delayed response after a timer, whole or streamed through the writer
$route{'/delayed'} = sub ($env) {
  return sub ($responder) {
    require IO::Async::Loop;
    IO::Async::Loop->new->delay_future(after => 0.1)->on_done(sub {
      if ($env->{QUERY_STRING} eq 'whole') {
        $responder->([200, ['Content-Type' => 'text/plain'], ['whole after a wait']]);
        return;
      }
      my $w = $responder->([200, ['Content-Type' => 'text/plain']]);
      $w->write("part $_;") for 1 .. 3;
      IO::Async::Loop->new->delay_future(after => 0.05)->on_done(sub {
        $w->write('last');
        $w->close;
      });
    })->retain;
  };
};
$route{'/file'} = sub ($env) {
  open(my $fh, '<', $tmp->filename) or die $!;
  return [200, ['Content-Type' => 'application/octet-stream'], $fh];
};
$route{'/getline'} = sub ($env) {
  my @lines = ("one\n", "two\n", "three\n");
  my $closed = 0;
  my $body = Plack::Util::inline_object(getline => sub { shift @lines }, close => sub { $closed++ });
  return [200, ['Content-Type' => 'text/plain'], $body];
};
$route{'/die'} = sub ($env) { die "psgi boom\n" };
$route{'/die-late'} = sub ($env) {
  return sub ($responder) { die "psgi boom in the responder\n" };
};
$route{'/chars'} = sub ($env) { [200, ['Content-Type' => 'text/plain'], ["caf\x{e9} \x{2603}"]] };
$route{'/harakiri'} = sub ($env) {
  $env->{'psgix.harakiri.commit'} = 1 if $env->{QUERY_STRING} eq 'commit';
  return [200, ['Content-Type' => 'text/plain', 'X-Pid' => $$], ["pid $$ harakiri $env->{'psgix.harakiri'}"]];
};

my $srv = start_server(psgi_app => $psgi, root_path => '');
ok($srv->port, 'server started') or BAIL_OUT('server did not start: ' . $srv->log);
my $port = $srv->port;

sub get ($path, %opt) {
  my $req = ($opt{method} // 'GET') . " $path HTTP/1.1\r\nHost: example.com:8080\r\n";
  $req .= "$_\r\n" for @{$opt{headers} || []};
  $req .= "Content-Length: " . length($opt{body}) . "\r\n" if defined $opt{body} && !$opt{chunked};
  $req .= "\r\n" . ($opt{chunked} // $opt{body} // '');
  my ($r) = http_exchange($port, $req, method => $opt{method} // 'GET');
  return $r->[0];
}

subtest 'the $env' => sub {
  my $r = get('/env/caf%C3%A9%2Fx?a=1&b=%20', headers => ['X-Multi: one', 'X-Multi: two',
    'Content-Type: text/plain', 'Cookie: a=1', 'Cookie: b=2']);
  is($r->{status}, 200, 'status 200');
  my $e = $JSON->decode($r->{body});
  is($e->{REQUEST_METHOD}, 'GET', 'REQUEST_METHOD');
  is($e->{SCRIPT_NAME}, '', 'SCRIPT_NAME: the root_path');
  is_deeply($e->{path_bytes}, [map { ord } split //, "/env/caf\xc3\xa9/x"],
    'PATH_INFO: percent-decoded bytes (not characters)');
  is($e->{REQUEST_URI}, '/env/caf%C3%A9%2Fx?a=1&b=%20', 'REQUEST_URI: as sent');
  is($e->{QUERY_STRING}, 'a=1&b=%20', 'QUERY_STRING');
  is($e->{SERVER_PROTOCOL}, 'HTTP/1.1', 'SERVER_PROTOCOL');
  is($e->{SERVER_NAME}, '127.0.0.1', 'SERVER_NAME: the listening address');
  is($e->{SERVER_PORT}, $port, 'SERVER_PORT');
  is($e->{HTTP_HOST}, 'example.com:8080', 'HTTP_HOST');
  is($e->{REMOTE_ADDR}, '127.0.0.1', 'REMOTE_ADDR');
  like($e->{REMOTE_PORT}, qr/\A[0-9]+\z/, 'REMOTE_PORT');
  is($e->{HTTP_X_MULTI}, 'one, two', 'repeated fields joined with ", "');
  is($e->{HTTP_COOKIE}, 'a=1; b=2', 'Cookie fields joined with "; " (RFC 6265 5.4)');
  is($e->{CONTENT_TYPE}, 'text/plain', 'CONTENT_TYPE, not HTTP_CONTENT_TYPE');
  ok(!exists $e->{HTTP_CONTENT_TYPE} && !exists $e->{CONTENT_LENGTH}, 'no HTTP_CONTENT_TYPE; no CONTENT_LENGTH without a body');
  is_deeply($e->{'psgi.version'}, [1, 1], 'psgi.version [1, 1]');
  is($e->{'psgi.url_scheme'}, 'http', 'psgi.url_scheme');
  is($e->{'psgi.errors'}, 'GLOB', 'psgi.errors: STDERR');
  is($e->{'psgi.input'}, 'PAGI::Server::PSGI::Input', 'psgi.input');
  is_deeply([@$e{qw(psgi.multithread psgi.multiprocess psgi.run_once psgi.nonblocking psgi.streaming
    psgix.input.buffered psgix.harakiri)}], ['', '', '', 1, 1, 1, ''],
    'multithread, multiprocess, run_once false; nonblocking, streaming, input.buffered true; no harakiri');
  ok(!exists $e->{'psgix.io'}, 'no psgix.io');
};

subtest 'request bodies: Content-Length, chunked, large; read in pieces and again after seek' => sub {
  my $r = get('/echo', method => 'POST', body => 'hello world');
  is($r->{body}, '11:hello world', 'a small body');
  is($r->{h}{'x-again'}, 'hello', 'seekable: read again after seek(0, 0)');
  is($r->{h}{'x-length'}, 11, 'CONTENT_LENGTH');
  $r = get('/echo', method => 'POST', headers => ['Transfer-Encoding: chunked'],
    chunked => "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  is($r->{body}, '11:hello world', 'a chunked body, reassembled');
  is($r->{h}{'x-length'}, 11, '... CONTENT_LENGTH set to its length');
  my $big = join '', map { chr(97 + $_ % 26) } 0 .. 299_999;
  $r = get('/echo', method => 'POST', body => $big);
  is($r->{body}, '300000:' . substr($big, 0, 20), 'a 300 kB body, whole before the app runs');
};

subtest 'responses: delayed, streamed, file, getline object, HEAD, characters' => sub {
  my $r = get('/delayed?whole');
  is($r->{body}, 'whole after a wait', 'a delayed whole response');
  $r = get('/delayed?stream');
  is($r->{body}, 'part 1;part 2;part 3;last', 'a streamed response through the writer');
  is($r->{framing}, 'chunked', '... chunked');
  $r = get('/file');
  is(length $r->{body}, 100_000, 'a filehandle body');
  is($r->{h}{'content-length'}, 100_000, '... with its Content-Length');
  $r = get('/getline');
  is($r->{body}, "one\ntwo\nthree\n", 'an object with getline');
  $r = get('/file', method => 'HEAD');
  is($r->{h}{'content-length'}, 100_000, 'HEAD: the Content-Length');
  is($r->{body}, '', '... no body');
  $r = get('/chars');
  is($r->{status}, 500, 'a body of characters (not bytes): the send fails, nothing was written: a 500');
};

subtest 'keep-alive and pipelining' => sub {
  my ($r) = http_exchange($port, join('', map { "GET /getline HTTP/1.1\r\nHost: a\r\n\r\n" } 1 .. 5), n => 5);
  is(scalar @$r, 5, 'five pipelined requests on one connection');
  is_deeply([map { $_->{body} } @$r], [("one\ntwo\nthree\n") x 5], '... answered in order');
};

subtest 'errors: 500 and a log line' => sub {
  my $r = get('/die');
  is($r->{status}, 500, 'the app dies: 500');
  ok($srv->wait_log(qr/\[error\] application error: psgi boom$/m), 'logged');
  $r = get('/die-late');
  is($r->{status}, 500, 'the app dies in its delayed response: 500');
  ok($srv->wait_log(qr/\[error\] application error: psgi boom in the responder/), 'logged');
  is(get('/nothing')->{status}, 404, 'the app\'s own 404');
};

subtest 'an upgrade or event-stream request reaches the PSGI app as plain HTTP' => sub {
  my ($bytes) = ws_request(path => '/env/ws');
  my ($r) = http_exchange($port, $bytes);
  is($r->[0]{status}, 200, 'a WebSocket handshake: the app answers it (no 101 from the server)');
  my $e = $JSON->decode($r->[0]{body});
  is(lc $e->{HTTP_UPGRADE}, 'websocket', '... with HTTP_UPGRADE in its $env');
  $r = get('/env/sse', headers => ['Accept: text/event-stream']);
  is($r->{status}, 200, 'Accept: text/event-stream: the app answers it');
  is($r->{h}{'content-type'}, 'application/json', '... with its own response');
};

is($srv->stop, 0, 'server exits 0');

subtest 'root_path: SCRIPT_NAME, and PATH_INFO without it' => sub {
  my $s = start_server(psgi_app => $route{'/env'}, root_path => '/app');
  my ($r) = http_exchange($s->port, "GET /app/x/y HTTP/1.1\r\nHost: a\r\n\r\n");
  my $e = $JSON->decode($r->[0]{body});
  is($e->{SCRIPT_NAME}, '/app', 'SCRIPT_NAME /app');
  is_deeply($e->{path_bytes}, [map { ord } split //, '/x/y'], 'PATH_INFO /x/y');
  is($s->stop, 0, 'exit 0');
};

subtest 'workers: psgi.multiprocess, psgix.harakiri' => sub {
  my $s = start_server(psgi_app => $psgi, workers => 1);
  my $first;
  ok(wait_for(sub {
    my ($r) = http_exchange($s->port, "GET /harakiri HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    $first = $r->[0] && $r->[0]{h}{'x-pid'};
  }, 10), 'a worker answers');
  my ($r) = http_exchange($s->port, "GET /harakiri HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  like($r->[0]{body}, qr/harakiri 1\z/, 'psgix.harakiri is true');
  ($r) = http_exchange($s->port, "GET /harakiri?commit HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  is($r->[0]{h}{'x-pid'}, $first, 'psgix.harakiri.commit: answered by the same worker');
  my $next;
  ok(wait_for(sub {
    my ($r) = http_exchange($s->port, "GET /harakiri HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    $next = $r->[0] && $r->[0]{h}{'x-pid'};
    $next && $next != $first;
  }, 10), 'then that worker retires and a new one answers');
  is($s->stop, 0, 'exit 0');
};

subtest 'pagi-server app.psgi, --psgi FILE, plackup -s PAGI::Server' => sub {
  my $dir = File::Temp->newdir;
  my $code = "sub { my \$env = shift; [200, ['Content-Type' => 'text/plain'], "
    . "[\"psgi \$env->{PATH_INFO} env=\$ENV{PLACK_ENV}\"]] }\n";
  for my $name ('app.psgi', 'app.pl') {
    open(my $fh, '>', "$dir/$name") or die $!;
    print {$fh} $code;
    close $fh;
  }
  my $s = start_cli(args => ["$dir/app.psgi", '--port', 0, '-E', 'production']);
  ok($s->port, 'pagi-server app.psgi: started') or diag $s->log;
  my ($r) = http_exchange($s->port, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
  is($r->[0]{body}, 'psgi /x env=production', 'served as PSGI; PLACK_ENV is the mode');
  like($s->log, qr/a PSGI application/, 'the startup line says so');
  is($s->stop, 0, 'exit 0');

  $s = start_cli(args => ['--psgi', "$dir/app.pl", '--port', 0, '-E', 'development']);
  ($r) = http_exchange($s->port, "GET /y HTTP/1.1\r\nHost: a\r\n\r\n");
  is($r->[0]{body}, 'psgi /y env=development', '--psgi FILE: any file name');
  like($s->log, qr/Plack::Middleware::Lint and StackTrace/, 'development: Plack\'s Lint and StackTrace');
  is($s->stop, 0, 'exit 0');

  my ($plackup) = grep { -x } map { "$_/plackup" } split /:/, $ENV{PATH};
  SKIP: {
    skip 'plackup is not installed', 3 unless $plackup;
    my $port = do { require IO::Socket::IP; IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0, Listen => 1)->sockport };
    my $pid = fork // die "fork: $!";
    if (!$pid) {
      open(STDOUT, '>', '/dev/null');
      open(STDERR, '>', '/dev/null');
      exec($^X, '-I' . ROOT . '/lib', (grep { -d } ROOT . '/blib/arch', ROOT . '/blib/lib') ? ('-I' . ROOT . '/blib/arch') : (),
        $plackup, '-s', 'PAGI::Server', '--listen', "127.0.0.1:$port", '--workers', 1,
        "$dir/app.psgi") or exit 127;
    }
    my $got;
    ok(wait_for(sub {
      my ($r) = eval { http_exchange($port, "GET /z HTTP/1.1\r\nHost: a\r\n\r\n", timeout => 1) };
      $got = $r && $r->[0] && $r->[0]{body};
    }, 15), 'plackup -s PAGI::Server --listen HOST:PORT --workers 1: serves');
    like($got // '', qr{\Apsgi /z env=}, '... the PSGI application');
    kill 'TERM', $pid;
    waitpid($pid, 0);
    is($? >> 8, 0, '... and stops on TERM with exit 0');
  }
};

done_testing;
