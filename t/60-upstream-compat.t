use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use File::Temp ();
use File::Path ();
use IO::Socket::IP;
use Time::HiRes ();
use POSIX ();
use lib 't/lib';
use PAGI::Test::Server qw(:all);
use PAGI::Test::WebSocket qw(ws_connect);
use PAGI::Server;

# Coming from upstream PAGI::Server: its command lines, its embedding API and option
# shapes, the development/production modes, and the runner's environment (PAGI_ENV,
# $0 and FindBin, -I/-M, Future::IO), as the issue lists them. Runs on the backend
# PAGI_SERVER_BACKEND names, like every behaviour test.

my $dir = File::Temp->newdir;
sub write_file ($path, $text) {
  $path = "$dir/$path";
  (my $d = $path) =~ s{/[^/]+\z}{};
  File::Path::make_path($d);
  open(my $fh, '>', $path) or die "$path: $!";
  print {$fh} $text;
  close $fh;
  return $path;
}
my $TLIB = ROOT . '/t/lib';

# One application for most command lines; its file uses FindBin to find its own lib/
write_file('app/lib/CompatHelper.pm', "package CompatHelper; sub where { 'app lib' } 1;\n");
my $APP = write_file('app/app.pl', <<'APP');
use strict;
use warnings;
use experimental 'signatures';
use FindBin;
use lib "$FindBin::Bin/lib";
use CompatHelper;
use Future::AsyncAwait;
use IO::Async::Loop;
use PAGI::Test::Server qw(report respond attempt read_body);
my $loaded_as = $0;
my $bin = $FindBin::Bin;

async sub lifespan ($scope, $receive, $send) {
  my $how = $ENV{COMPAT_LIFESPAN} // 'none';
  return if $how eq 'none';
  my $ev = await $receive->();
  report(case => 'lifespan', type => $ev->{type});
  return await IO::Async::Loop->new->new_future if $how eq 'hang';
  await $send->({type => 'lifespan.startup.complete'});
  await $receive->();
  await $send->({type => 'lifespan.shutdown.complete'});
}

async sub ($scope, $receive, $send) {
  return await lifespan($scope, $receive, $send) if $scope->{type} eq 'lifespan';
  my $path = $scope->{path};
  if ($scope->{type} eq 'websocket') {
    await $receive->();
    await $send->({type => 'websocket.accept'});
    while (1) {
      my $ev = await $receive->();
      if ($ev->{type} eq 'websocket.disconnect') { report(case => 'ws', ev => $ev); return }
      # JSON encoded to bytes, given as text: twice
      for my $i (1, 2) { await $send->({type => 'websocket.send', text => "caf\xc3\xa9"}) }
    }
  }
  if ($scope->{type} eq 'sse') {
    await $receive->();
    await $send->({type => 'sse.start'});
    if ($path eq '/encoded') { for my $i (1, 2) { await $send->({type => 'sse.send', data => "caf\xc3\xa9"}) } }
    my $ev = await $receive->();
    report(case => 'sse', ev => $ev);
    return;
  }
  await read_body($receive);
  if ($path eq '/after') {
    await respond($send, 200, 'done');
    my $r = await attempt($send, {type => 'http.response.body', body => 'late'});
    report(case => 'after', result => $r);
    return;
  }
  if ($path eq '/block') { sleep 4 }
  my $body
    = $path eq '/env'       ? "$ENV{PAGI_ENV}|$loaded_as|$bin|" . CompatHelper::where()
    : $path eq '/loop'      ? ref(IO::Async::Loop->new)
    : $path eq '/sleep'     ? do { await Future::IO->sleep(0.05); 'slept' }
    : $path eq '/transport' ? join(' ', map { $scope->{'pagi.transport'}->$_ } qw(high_water_mark low_water_mark))
    : $path eq '/module'    ? (defined &main::from_m ? main::from_m() : 'no -M')
    : $path eq '/uid'       ? "$>"
    :                         "pid $$";
  await respond($send, 200, $body, ['content-type', 'text/plain']);
};
APP

sub get_body ($port, $path, @headers) {
  my ($r) = http_exchange($port, "GET $path HTTP/1.1\r\nHost: t\r\n" . join('', map { "$_\r\n" } @headers)
    . "Connection: close\r\n\r\n", until_close => 1);
  return $r->[0] ? $r->[0]{body} : undef;
}

sub cli (@args) { start_cli(args => [@args], env => {PERL5LIB => $TLIB}) }

subtest 'pagi-server --app FILE -p PORT (upstream README): served, with FindBin and $0 for the app' => sub {
  my $port = do { my $s = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0, Listen => 1); $s->sockport };
  my $srv = cli('--app', $APP, '-p', $port, '-E', 'development');
  is($srv->port, $port, "listening on the port given with -p ($port)") or return diag $srv->log;
  my ($env, $zero, $bin, $lib) = split /\|/, get_body($port, '/env');
  is($env, 'development', 'PAGI_ENV is the mode (-E development)');
  is($zero, $APP, '$0 was the app file while it loaded');
  is($bin, "$dir/app", 'FindBin::Bin is the app file\'s directory');
  is($lib, 'app lib', 'use lib "$FindBin::Bin/lib" found the app\'s own module');
  is(get_body($port, '/sleep'), 'slept', 'Future::IO->sleep runs on the server\'s loop');
  like($srv->log, qr/Future::IO on the server's loop/, '... as the startup line says');
  is($srv->stop, 0, 'SIGTERM: exit 0');
};

subtest '-E production -o HOST, PAGI_ENV; -v' => sub {
  my $srv = cli('-E', 'production', '-o', '127.0.0.1', '-p', 0, $APP);
  ok($srv->port, 'listening') or return diag $srv->log;
  is((split /\|/, get_body($srv->port, '/env'))[0], 'production', 'PAGI_ENV=production');
  is($srv->stop, 0, 'exit 0');
  unlike($srv->log, qr{"GET /env}, 'production: no access log by default');
  $srv = start_cli(args => ['-p', 0, $APP], env => {PERL5LIB => $TLIB, PAGI_ENV => 'staging'});
  is((split /\|/, get_body($srv->port, '/env'))[0], 'staging', 'PAGI_ENV from the environment when there is no -E');
  is($srv->stop, 0, 'exit 0');
  my $r = run_cli(args => ['-v']);
  is($r->{exit}, 0, '-v exits 0');
  like($r->{stdout}, qr/\Apagi-server \(PAGI::Server\) [0-9.]+, backend (?:XS|PP)/, '... printing the version');
};

subtest '--lib DIR -M Module, -e CODE, a module name with key=value' => sub {
  write_file('mods/CompatM.pm', "package CompatM; sub import { no strict 'refs'; *{'main::from_m'} = sub { 'from -M' } } 1;\n");
  write_file('mods/Compat/App.pm', <<'MOD');
package Compat::App;
use strict;
use warnings;
use PAGI::Test::Server qw(respond);
sub new { my ($class, %args) = @_; bless {%args}, $class }
sub to_app {
  my ($self) = @_;
  return sub {
    my ($scope, $receive, $send) = @_;
    return Future->done if $scope->{type} eq 'lifespan';
    respond($send, 200, "greeting=$self->{greeting} root=$self->{root} caller=" . ($self->{_caller_file} =~ m{Compat/App\.pm\z} ? 'yes' : 'no'));
  };
}
1;
MOD
  my $srv = cli('--lib', "$dir/mods", '-M', 'CompatM', $APP, '-p', 0);
  ok($srv->port, 'listening') or return diag $srv->log;
  is(get_body($srv->port, '/module'), 'from -M', '-M loaded (and imported) the module from --lib before the app');
  is($srv->stop, 0, 'exit 0');

  $srv = cli('-I', "$dir/mods", 'Compat::App', 'greeting=hi', 'root=/srv', '-p', 0);
  ok($srv->port, 'a module name as the app') or return diag $srv->log;
  is(get_body($srv->port, '/'), 'greeting=hi root=/srv caller=yes', '... made with new(key => value)->to_app');
  is($srv->stop, 0, 'exit 0');

  $srv = cli("-I$dir/mods", '-MCompat::App', '-e', 'Compat::App->new(greeting => "e", root => "x")->to_app', '-p', 0);
  ok($srv->port, '-e CODE with -MModule (written together)') or return diag $srv->log;
  like(get_body($srv->port, '/'), qr/\Agreeting=e root=x/, '... serves what the code returned');
  is($srv->stop, 0, 'exit 0');

  # -s CLASS: another server, through the PAGI runner contract (new(%options)->run)
  write_file('mods/Compat/Server.pm', <<'MOD');
package Compat::Server;
sub new { my ($class, %o) = @_; bless {%o}, $class }
sub run { my ($self) = @_; print join(' ', map { "$_=" . (ref $self->{$_} || $self->{$_} // 'undef') } sort keys %$self), "\n"; 0 }
1;
MOD
  my $s = run_cli(args => ['-I', "$dir/mods", '-s', 'Compat::Server', $APP, '-p', 7, '-q'], env => {PERL5LIB => $TLIB});
  is($s->{exit}, 0, '-s CLASS: run returned 0');
  is($s->{stdout}, "access_log=undef app=CODE host=127.0.0.1 port=7 quiet=1\n",
    '... made with the runner contract\'s options');
  $s = run_cli(args => ['-I', "$dir/mods", '-s', 'Compat::Server', $APP, '--reuseport'], env => {PERL5LIB => $TLIB});
  like($s->{stderr}, qr/--server Compat::Server takes only the runner contract's options.*reuseport/,
    '... and refuses the options it cannot take');

  my $r = run_cli(args => ['No::Such::AppModule'], env => {PERL5LIB => $TLIB});
  is($r->{exit}, 2, 'a module that is not installed: exit 2');
  like($r->{stderr}, qr/\Apagi-server: Cannot find module 'No::Such::AppModule' \(the application\): it is not installed[^\n]*\n\z/,
    '... saying so in one line (upstream\'s words)');
  $r = run_cli(args => ['-e', '42'], env => {PERL5LIB => $TLIB});
  is($r->{exit}, 2, '-e code that returns no code reference: exit 2');
  like($r->{stderr}, qr/\Apagi-server: -e code must return a coderef \(the application\), got non-reference\n\z/,
    '... saying so (upstream\'s words)');
};

subtest 'development wraps the app in PAGI::Middleware::Lint when installed (a stand-in here)' => sub {
  write_file('lint/PAGI/Middleware/Lint.pm', <<'MOD');
package PAGI::Middleware::Lint;
sub new { my ($class, %o) = @_; bless {%o}, $class }
sub wrap {
  my ($self, $app) = @_;
  my $strict = $self->{strict};
  return sub {
    my ($scope, $receive, $send) = @_;
    return $app->(@_) if $scope->{type} eq 'lifespan';
    $app->($scope, $receive, sub {
      my ($ev) = @_;
      $ev = {%$ev, body => "linted(strict=$strict) $ev->{body}"} if $ev->{type} eq 'http.response.body';
      $send->($ev);
    });
  };
}
1;
MOD
  my %want = (development => 'linted(strict=1) pid', production => 'pid');
  for my $case (['development'], ['production'], ['development', '--no-default-middleware']) {
    my ($mode, @more) = @$case;
    my $srv = cli('-I', "$dir/lint", $APP, '-p', 0, '-E', $mode, @more);
    my $want = @more ? 'pid' : $want{$mode};
    like(get_body($srv->port, '/'), qr/\A\Q$want\E \d+\z/, "$mode @more: " . ($want =~ /linted/ ? 'wrapped' : 'not wrapped'));
    is($srv->stop, 0, 'exit 0');
  }
};

subtest '-l/--loop (upstream: the loop; was --listen here)' => sub {
  my $srv = cli('-l', 'Select', $APP, '-p', 0);
  ok($srv->port, '-l Select') or return diag $srv->log;
  is(get_body($srv->port, '/loop'), 'IO::Async::Loop::Select', 'the app runs on IO::Async::Loop::Select');
  is($srv->stop, 0, 'exit 0');
  $srv = cli('--loop', 'EPoll', $APP, '-p', 0);    # upstream's spelling
  ok($srv->port, '--loop EPoll (upstream\'s spelling of Epoll)') or return diag $srv->log;
  is(get_body($srv->port, '/loop'), 'IO::Async::Loop::Epoll', '... is IO::Async::Loop::Epoll');
  is($srv->stop, 0, 'exit 0');
  my $r = run_cli(args => [$APP, '--loop', 'NoSuchLoop']);
  is($r->{exit}, 2, 'a loop that is not installed: exit 2');
  like($r->{stderr}, qr/\Apagi-server: the loop 'NoSuchLoop' needs IO::Async::Loop::NoSuchLoop, which is not installed; installed loops: [^\n]*Select\n\z/,
    '... in one line naming the module and the installed loops');
  # The issue's own example: -l EV (its IO::Async loop class may or may not be installed)
  if (eval { require IO::Async::Loop::EV; 1 }) {
    $srv = cli('-l', 'EV', $APP, '-p', 0);
    is(get_body($srv->port, '/loop'), 'IO::Async::Loop::EV', '-l EV: the EV loop');
    is($srv->stop, 0, 'exit 0');
  }
  else {
    $r = run_cli(args => ['-l', 'EV', $APP]);
    is($r->{exit}, 2, '-l EV without IO::Async::Loop::EV: exit 2');
    like($r->{stderr}, qr/\Apagi-server: the loop 'EV' needs IO::Async::Loop::EV, which is not installed; installed loops: .*\n\z/,
      '... one line naming it (not "cannot parse listen address")');
  }
  $srv = cli('--listen', '127.0.0.1:0', $APP);
  ok($srv->port, '--listen HOST:PORT still listens') or diag $srv->log;
  is($srv->stop, 0, 'exit 0');
};

subtest 'refused and misspelt options' => sub {
  for my $case ([['--sync-file-threshold', 0], qr/--sync-file-threshold is not supported/],
    [['--future-xs'], qr/--future-xs is not supported/],
    [['--max-header-cont', 5], qr/unknown option --max-header-cont \(did you mean --max-header-count\?\)/]) {
    my ($args, $re) = @$case;
    my $r = run_cli(args => [@$args, $APP]);
    is($r->{exit}, 2, "@$args: exit 2");
    like($r->{stderr}, qr/\Apagi-server: [^\n]*$re[^\n]*\n\z/, '... one line: ' . ($r->{stderr} =~ s/\n//r));
  }
};

subtest '--timeout is the keep-alive idle timeout (upstream); --request-timeout ours' => sub {
  my $srv = cli('--timeout', 1, '--request-timeout', 1, $APP, '-p', 0);
  ok($srv->port, 'listening') or return diag $srv->log;
  my $c = http_connect($srv->port, timeout => 6);
  $c->send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
  my ($r) = $c->read_responses;
  is($r->{status}, 200, 'a keep-alive request');
  my $t0 = Time::HiRes::time();
  $c->read_responses(until_close => 1, timeout => 5);
  my $idle = Time::HiRes::time() - $t0;
  ok($c->{closed} && $idle < 3.5, sprintf('the idle connection is closed after --timeout 1 (%.1f s)', $idle));
  # --request-timeout: a body that stops arriving
  $c = http_connect($srv->port, timeout => 6);
  $c->send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
  ($r) = $c->read_responses(until_close => 1, timeout => 5);
  is($r->{status}, 408, 'a stalled body: 408 after --request-timeout 1');
  is($srv->stop, 0, 'exit 0');
};

subtest 'limits: --max-header-count, --write-*-watermark, -b, --max-ws-frame-size' => sub {
  my $srv = cli($APP, '-p', 0, '--max-header-count', 6, '--write-high-watermark', 4096,
    '--write-low-watermark', 1024, '-b', 16, '--max-ws-frame-size', 16);
  ok($srv->port, 'listening') or return diag $srv->log;
  my ($r) = http_exchange($srv->port, "GET / HTTP/1.1\r\nHost: t\r\n" . join('', map { "X-$_: 1\r\n" } 1 .. 6)
    . "\r\n", until_close => 1);
  is($r->[0]{status}, 431, 'seven header fields over --max-header-count 6: 431');
  is(get_body($srv->port, '/transport'), '4096 1024', 'pagi.transport reports the watermarks');
  my ($ws) = ws_connect($srv->port, path => '/ws');
  $ws->send_text('x' x 20);
  my ($code) = $ws->read_close;
  is($code, 1009, 'a 20-byte frame over --max-ws-frame-size 16: close 1009');
  is($srv->stop, 0, 'exit 0');
};

subtest '--socket with --socket-mode; --access-log-format' => sub {
  my $sock = "$dir/compat.sock";
  my $log = "$dir/combined.log";
  my $srv = cli($APP, '--socket', $sock, '--socket-mode', '0660', '--listen', '127.0.0.1:0',
    '--access-log', $log, '--access-log-format', 'combined');
  ok($srv->port, 'listening') or return diag $srv->log;
  is(sprintf('%04o', (stat $sock)[2] & 07777), '0660', 'the socket file has mode 0660');
  get_body($srv->port, '/a?b=1', 'Referer: http://ref/', 'User-Agent: compat-test');
  is($srv->stop, 0, 'exit 0');
  like(slurp($log), qr{\A127\.0\.0\.1 - - \[[^]]+\] "GET /a\?b=1 HTTP/1\.1" 200 \d+ "http://ref/" "compat-test"\n\z},
    '--access-log-format combined');
  $srv = cli($APP, '-p', 0, '--access-log', $log, '--access-log-format', '%m %U%q %s %{X-Id}i %%');
  get_body($srv->port, '/t?x', 'X-Id: 42');
  is($srv->stop, 0, 'exit 0');
  like(slurp($log), qr{^GET /t\?x 200 42 %$}m, 'a format of fields');
  my $r = run_cli(args => [$APP, '--access-log-format', '%h %Q'], env => {PERL5LIB => $TLIB});
  is($r->{exit}, 2, 'an unknown field: exit 2');
  like($r->{stderr}, qr/unknown field %Q/, '... naming it');
};

subtest '--lifespan on/off, --lifespan-startup-timeout' => sub {
  my $r = run_cli(args => [$APP, '-p', 0, '--lifespan', 'on'], env => {PERL5LIB => $TLIB});
  is($r->{exit}, 1, '--lifespan on, an app without lifespan: exit 1');
  like($r->{stderr}, qr/lifespan_mode is on, but the application does not support lifespan/, '... saying why');
  my $srv = start_cli(args => [$APP, '-p', 0, '--lifespan', 'off'], env => {PERL5LIB => $TLIB, COMPAT_LIFESPAN => 'yes'});
  ok($srv->port, '--lifespan off: listening') or return diag $srv->log;
  is($srv->stop, 0, 'exit 0');
  is(scalar(grep { $_->{case} eq 'lifespan' } $srv->reports), 0, '... and the app never saw a lifespan scope');
  my $t0 = Time::HiRes::time();
  $r = run_cli(args => [$APP, '-p', 0, '--lifespan-startup-timeout', 1],
    env => {PERL5LIB => $TLIB, COMPAT_LIFESPAN => 'hang'});
  is($r->{exit}, 1, 'a startup that never finishes: exit 1');
  like($r->{stderr}, qr/Lifespan startup timed out after 1 s/, '... after --lifespan-startup-timeout');
  cmp_ok(Time::HiRes::time() - $t0, '<', 8, '... soon');
};

subtest '--ws-idle-timeout and --sse-idle-timeout' => sub {
  my $srv = cli($APP, '-p', 0, '--ws-idle-timeout', 1, '--sse-idle-timeout', 1);
  ok($srv->port, 'listening') or return diag $srv->log;
  my ($ws) = ws_connect($srv->port, path => '/ws', timeout => 6);
  my ($code) = $ws->read_close(6);
  is($code, 1001, 'an idle WebSocket gets Close 1001');
  my ($ev) = $srv->reports_of('ws');
  is_deeply($ev->{ev}, {type => 'websocket.disconnect', code => 1006, reason => 'idle_timeout'},
    '... and the app 1006 idle_timeout');
  my $c = http_connect($srv->port, timeout => 6);
  $c->send("GET /quiet HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n");
  my ($r) = $c->read_responses(until_close => 1, timeout => 6);
  is($r->{status}, 200, 'an event stream');
  ok($c->{closed}, '... ended when idle');
  ($ev) = $srv->reports_of('sse');
  is_deeply($ev->{ev}, {type => 'sse.disconnect', reason => 'idle_timeout'}, '... the app told idle_timeout');
  is($srv->stop, 0, 'exit 0');
};

subtest 'development and production modes' => sub {
  for my $mode (qw(development production)) {
    my $srv = cli($APP, '-p', 0, '-E', $mode, '--log-level', 'debug');
    ok($srv->port, "$mode: listening") or return diag $srv->log;
    get_body($srv->port, '/after');
    my ($after) = $srv->reports_of('after');
    my ($ws) = ws_connect($srv->port, path => '/ws');
    $ws->send_text('go');
    is_deeply($ws->read_message, {text => "caf\xc3\xa9"},
      "$mode: WebSocket text is sent as given (characters, UTF-8 encoded)");
    $ws->read_message;
    $ws->send_text('again');
    $ws->read_message for 1, 2;
    my $c = http_connect($srv->port);
    $c->send("GET /encoded HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n");
    $c->read_responses(until_close => 1, timeout => 0.5);
    if ($mode eq 'development') {
      like($after->{result}, qr/error: http.response.body after the response was complete/,
        'development: a send after completion fails');
      my @warned = $srv->log_grep(qr/looks like UTF-8 bytes/);
      ok(wait_for(sub { @warned = $srv->log_grep(qr/looks like UTF-8 bytes/); @warned == 2 }, 3),
        'development: one warning per connection for text that looks like UTF-8 bytes (four sends, two connections)')
        or diag explain \@warned;
      like($warned[0], qr/websocket\.send text looks like UTF-8 bytes.*decode it first, or send it as bytes/,
        '... saying what to do');
    }
    else {
      is($after->{result}, 'ok', 'production: a send after completion is ignored');
      ok($srv->wait_log(qr/\[debug\] http\.response\.body after the response was complete: ignored/),
        '... with a debug line');
      is(scalar $srv->log_grep(qr/looks like UTF-8 bytes/), 0, 'production: no warning about the text');
    }
    $ws->close;
    $c->close;
    is($srv->stop, 0, "$mode: exit 0");
  }
};

subtest 'embedding (upstream SYNOPSIS): $loop->add, listen, port, is_running, shutdown, remove' => sub {
  require IO::Async::Loop;
  my $loop = IO::Async::Loop->new;
  my $log = '';
  open(my $logfh, '>', \$log) or die $!;
  my %loop_seen;
  my $app = sub ($scope, $receive, $send) {
    $loop_seen{$scope->{type}} = $scope->{pagi}{loop};
    if ($scope->{type} eq 'lifespan') {
      return $receive->()->then(sub { $scope->{state}{greeting} = 'hi'; $send->({type => 'lifespan.startup.complete'}) })
        ->then(sub { $receive->() })->then(sub { $send->({type => 'lifespan.shutdown.complete'}) });
    }
    return read_body($receive)->then(sub { respond($send, 200, "embedded $scope->{state}{greeting}") });
  };
  my $server = PAGI::Server->new(app => $app, host => '127.0.0.1', port => 0, quiet => 1,
    access_log => $logfh, access_log_format => 'tiny', max_header_count => 10);
  isa_ok($server, 'IO::Async::Notifier');
  ok(!$server->is_running, 'not running before listen');
  $loop->add($server);
  is($server->loop, $loop, '$loop->add($server): the server is in the loop');
  my $f = $server->listen;
  isa_ok($f, 'Future', 'listen');
  is($f->get, $server, '... done with the server');
  ok($server->is_running, 'is_running');
  my $port = $server->port;
  cmp_ok($port, '>', 0, "port: the bound port ($port)");
  is_deeply($server->listeners, [{type => 'tcp', host => '127.0.0.1', port => $port}], 'listeners');
  is($server->socket_path, undef, 'socket_path: none');
  like($server->has_tls, qr/\A[01]\z/, 'has_tls: whether TLS is installed');
  my ($out) = $loop->run_process(command => ['curl', '-s', "http://127.0.0.1:$port/x"], capture => ['stdout'])->get;
  is($out, 'embedded hi', 'serves from inside the loop (lifespan state too)');
  ok(!defined $loop_seen{http} && !defined $loop_seen{lifespan}, 'no pagi.loop without scope_loop');
  like($log, qr{\AGET /x 200 \d+ms\n\z}, 'access_log_format tiny');
  $server->configure(access_log_format => 'common');
  ($out) = $loop->run_process(command => ['curl', '-s', "http://127.0.0.1:$port/y"], capture => ['stdout'])->get;
  like($log, qr{"GET /y HTTP/1\.1" 200 11\n\z}, 'configure changes a running server\'s options');
  ok(!eval { $server->configure(port => 1); 1 }, 'configure: a listening option cannot change');
  like($@, qr/port cannot change once the server is listening/, '... saying so');
  is($server->shutdown->get, $server, 'shutdown: a Future done with the server');
  ok(!$server->is_running, 'not running after shutdown');
  ok(!IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port), 'the port is closed');
  $loop->remove($server);
  ok(!$server->loop, '$loop->remove($server)');

  # Upstream's listen => [{host, port}, {socket, socket_mode}]
  my $sock = "$dir/embedded.sock";
  $server = PAGI::Server->new(app => $app, quiet => 1, access_log => undef,
    listen => [{host => '127.0.0.1', port => 0}, {socket => $sock, socket_mode => 0600}], scope_loop => 1);
  $loop->add($server);
  $server->listen->get;
  is($server->socket_path, $sock, 'socket_path: the Unix socket');
  is_deeply($server->listeners, [{type => 'tcp', host => '127.0.0.1', port => $server->port},
    {type => 'unix', path => $sock, socket_mode => 0600}], 'listeners: both');
  is(sprintf('%04o', (stat $sock)[2] & 07777), '0600', 'socket_mode 0600');
  ($out) = $loop->run_process(command => ['curl', '-s', '--unix-socket', $sock, 'http://x/'], capture => ['stdout'])->get;
  is($out, 'embedded hi', 'served on the Unix socket');
  is($loop_seen{http}, $loop, 'scope_loop => 1: an http scope has pagi.loop, the server\'s loop');
  is($loop_seen{lifespan}, $loop, '... and so does the lifespan scope');
  # Removed from the loop without a shutdown: it stops at once
  my $p = $server->port;
  $loop->remove($server);
  ok(!$server->is_running && !-e $sock, 'removed while running: stopped, socket file gone');
  ok(!IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $p), '... the port closed');
};

subtest 'upstream option shapes and refusals (new)' => sub {
  my $app = sub { Future->done };
  my $s = PAGI::Server->new(app => $app, timeout => 7, max_header_count => 9, listener_backlog => 8,
    lifespan_mode => 'off', ssl => undef);
  is_deeply([map { $s->option($_) } qw(keepalive_timeout max_headers listener_backlog lifespan_mode)], [7, 9, 8, 'off'],
    'timeout, max_header_count, listener_backlog, lifespan_mode');
  ok(!eval { PAGI::Server->new(app => $app, timeout => 7, keepalive_timeout => 8); 1 }, 'an alias and its option disagreeing');
  like($@, qr/timeout and keepalive_timeout are the same option/, '... croaks');
  my $h2 = PAGI::Server->new(app => $app, http2 => 1, h2_max_concurrent_streams => 5,
    h2_rst_rate_limit => {burst => 50, rate => 5});
  is_deeply([map { $h2->option($_) } qw(http2 h2_max_concurrent_streams)], [1, 5],
    'http2 and the h2_* options are taken (upstream\'s shapes: h2_rst_rate_limit => {burst, rate})');
  ok(!eval { PAGI::Server->new(app => $app, sync_file_threshold => 65536); 1 }, 'an option without a mechanism here croaks');
  like($@, qr/sync_file_threshold is not supported/, '... saying why');
  ok(!eval { PAGI::Server->new(app => $app, ssl => {cert_file => '/nonexistent.pem', key_file => '/nonexistent.key'}); 1 },
    'ssl => {cert_file, key_file} is read');
  like($@, qr/SSL certificate file not found: \/nonexistent\.pem/, '... and checked');
  ok(eval { PAGI::Server->new(app => $app, ssl => {cert_file => '/nonexistent.pem', key_file => '/x'}, disable_tls => 1); 1 },
    'disable_tls: ssl is not used');
  ok(!eval { PAGI::Server->new(app => $app, ssl => {cert => 'x'}); 1 }, 'an unknown ssl key croaks');
  like($@, qr/unknown ssl key\(s\): cert/, '... naming it');
  ok(!eval { PAGI::Server->new(app => $app, max_header_cont => 1); 1 }, 'a misspelt option croaks');
  like($@, qr/unknown option\(s\): max_header_cont \(did you mean max_header_count\?\)/, '... naming the nearest');
};

subtest '--workers with --reuseport: a listening socket per worker; --heartbeat-timeout' => sub {
  my $srv = cli($APP, '-p', 0, '--workers', 2, '--reuseport', '--heartbeat-timeout', 2);
  ok($srv->port, 'listening') or return diag $srv->log;
  my $hex = sprintf '%04X', $srv->port;
  my $listening = sub {
    my $n = 0;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
      open(my $fh, '<', $f) or next;
      $n += grep { /\A\s*\d+: [0-9A-F]+:$hex [0-9A-F]+:0000 0A / } <$fh>;
    }
    $n;
  };
  ok(wait_for(sub { $listening->() == 2 }, 10), 'two listening sockets on the port (one per worker)')
    or diag 'listening sockets: ' . $listening->();
  my %pids;
  $pids{get_body($srv->port, '/') // ''}++ for 1 .. 30;
  is(scalar(grep { /\Apid \d+\z/ } keys %pids), 2, 'both workers serve');
  # A worker whose loop blocks (the app sleeps 4 s) is killed after 2 s
  my $c = http_connect($srv->port, timeout => 8);
  $c->send("GET /block HTTP/1.1\r\nHost: t\r\n\r\n");
  ok($srv->wait_log(qr/sent no heartbeat for \d+ s \(its event loop is blocked\): killing it/, 10),
    'a blocked worker is killed (heartbeat)');
  ok(wait_for(sub { (get_body($srv->port, '/') // '') =~ /\Apid/ }, 5), '... and the server still serves');
  is($srv->stop, 0, 'exit 0');
};

subtest '-D --pid: a daemon that says when it listens' => sub {
  my $pidfile = "$dir/pagi.pid";
  my $port = do { my $s = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0, Listen => 1); $s->sockport };
  my $r = run_cli(args => [$APP, '-p', $port, '-D', '--pid', $pidfile], env => {PERL5LIB => $TLIB});
  is($r->{exit}, 0, '-D returns 0 once the daemon listens');
  my $pid = slurp($pidfile) =~ /\A([0-9]+)\n\z/ ? $1 : undef;
  ok($pid && kill(0, $pid), "--pid wrote the daemon's pid") or return;
  like(get_body($port, '/'), qr/\Apid $pid\z/, 'the daemon serves');
  kill 'TERM', $pid;
  ok(wait_for(sub { !kill 0, $pid }, 10), 'SIGTERM stops it');
  ok(!-e $pidfile, '... and removes the pid file');
  # A taken port: the error is seen where the daemon was started, and the exit is 1
  my $hold = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0, Listen => 1) or die $@;
  $r = run_cli(args => [$APP, '-p', $hold->sockport, '-D'], env => {PERL5LIB => $TLIB});
  is($r->{exit}, 1, '-D on a port in use: exit 1');
  like($r->{stderr}, qr/cannot listen on 127\.0\.0\.1:${\ $hold->sockport}/, '... with the error where it was started');
};

subtest '--user/--group: bound as root, then the privileges dropped before the application loads' => sub {
  plan skip_all => 'needs root' if $> != 0;
  my ($nobody, $nogroup) = (scalar getpwnam('nobody'), scalar getgrnam('nogroup'));
  plan skip_all => 'no user nobody and group nogroup' unless defined $nobody && defined $nogroup;
  my $priv = File::Temp->newdir;
  chmod 0755, "$priv";
  # A root-owned file and directory the application must not be able to write
  my $root_file = "$priv/root-owned";
  open(my $rf, '>', $root_file) or die $!;
  close $rf;
  chmod 0644, $root_file;
  open(my $af, '>', "$priv/app.pl") or die $!;
  print {$af} <<"APP";
use strict; use warnings; use experimental 'signatures'; use Future;
# What the file runs as while it loads
print STDERR "LOADED-AS uid=\$< euid=\$> gid=\$( egid=\$)\\n";
sub (\$scope, \$receive, \$send) {
  return Future->done if \$scope->{type} eq 'lifespan';
  my \$body;
  if (\$scope->{path} eq '/ids') {
    open(my \$fh, '<', "/proc/self/status") or die \$!;
    \$body = join '', grep { /^(?:Uid|Gid|Groups):/ } <\$fh>;
  }
  else {
    my \@r;
    push \@r, open(my \$w, '>>', '$root_file') ? 'appended' : "append: \$!";
    push \@r, open(my \$c, '>', '$priv/new-file') ? 'created' : "create: \$!";
    \$body = join '; ', \@r;
  }
  \$send->({type => 'http.response.start', status => 200, headers => [['content-type', 'text/plain'], ['x-pid', \$\$]]})
    ->then(sub { \$send->({type => 'http.response.body', body => \$body}) });
};
APP
  close $af;
  # A free privileged port: only root can bind it
  my ($port) = grep { IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => $_, Listen => 1, ReuseAddr => 1) } 900 .. 1023;
  my $ids = "Uid:\t$nobody\t$nobody\t$nobody\t$nobody\nGid:\t$nogroup\t$nogroup\t$nogroup\t$nogroup\n";
  my $ids_ok = sub ($text) { index($text, $ids) == 0 && $text =~ /^Groups:\t(?:$nogroup ?)?\s*$/m };
  for my $workers (0, 2) {
    my $what = $workers ? '--workers 2' : 'one process';
    my $pidfile = "$priv/pagi-$workers.pid";
    my $srv = cli("$priv/app.pl", '--listen', "127.0.0.1:$port", '--user', 'nobody', '--group', 'nogroup',
      '--workers', $workers, '--pid', $pidfile, '--no-access-log');
    is($srv->port, $port, "$what: listening on the privileged port $port") or return diag $srv->log;
    my @loaded = $srv->log =~ /^LOADED-AS (.*)$/mg;
    ok(@loaded >= 1, 'the application file was loaded...');
    is_deeply([grep { $_ ne "uid=$nobody euid=$nobody gid=$nogroup $nogroup egid=$nogroup $nogroup" } @loaded], [],
      '... as nobody:nogroup, never as root') or diag explain \@loaded;
    like($srv->log, qr/running as nobody:nogroup/, 'the drop is logged');
    my @procs = ($srv->pid, $workers ? wait_children_of($srv->pid, $workers) : ());
    is(scalar @procs, 1 + $workers, $workers ? 'the master and two workers' : 'the process');
    for my $pid (@procs) {
      ok($ids_ok->(slurp("/proc/$pid/status") =~ s/^(?!Uid|Gid|Groups).*\n//mgr),
        ($pid == $srv->pid ? ($workers ? 'the master' : 'the server') : "worker $pid")
        . ': real, effective, saved and filesystem uid and gid are nobody/nogroup, no supplementary group of root')
        or diag slurp("/proc/$pid/status") =~ s/^(?!Uid|Gid|Groups).*\n//mgr;
    }
    ok($ids_ok->(get_body($port, '/ids')), 'the application sees the same');
    is(get_body($port, '/write'), 'append: Permission denied; create: Permission denied',
      'the application cannot write a root-owned file, nor create one in a root-owned directory');
    ok(!-s $root_file && !-e "$priv/new-file", '... and did not');
    is((stat $pidfile)[4], $nobody, 'the pid file (written as root) belongs to nobody, so a new master can write it');
    if ($workers && (my $why = unreadable_as($nobody, $nogroup))) {
      # (a checkout under a directory only root may enter, as mktemp makes them)
      SKIP: { skip "USR2 as nobody: a new master runs as nobody, and $why", 5 }
      is($srv->stop, 0, 'exit 0');
    }
    elsif ($workers) {
      # USR2: the new master starts as nobody, from the same command line
      my $old = $srv->pid;
      kill 'USR2', $old;
      is($srv->wait_exit(15), 0, 'USR2: the old master retires');
      my $new = slurp($pidfile) =~ /\A([0-9]+)\n\z/ ? $1 : 0;
      ok($new && $new != $old, "the new master ($new) wrote the pid file") or diag $srv->log;
      ok($ids_ok->(slurp("/proc/$new/status") =~ s/^(?!Uid|Gid|Groups).*\n//mgr), 'it runs as nobody:nogroup');
      ok($ids_ok->(get_body($port, '/ids')), 'its workers run as nobody too');
      kill 'TERM', $new;
      ok(wait_for(sub { !-e "/proc/$new" || slurp("/proc/$new/stat") =~ /\) Z / }, 15), 'it stops on TERM');
    }
    else { is($srv->stop, 0, 'exit 0') }
  }
  # A directory of @INC that nobody may not search (0700, root's): what the loop and
  # the server load on first use must already be loaded when the workers start
  {
    my $locked = File::Temp->newdir;
    chmod 0700, "$locked";
    my $srv = start_cli(env => {PERL5LIB => "$locked:$TLIB"}, args => ["$priv/app.pl", '--listen',
      "127.0.0.1:$port", '--user', 'nobody', '--group', 'nogroup', '--workers', 2, '--no-access-log']);
    is($srv->port, $port, 'an @INC directory nobody cannot search: listening') or return diag $srv->log;
    ok($ids_ok->(get_body($port, '/ids') // ''), '... and its workers, as nobody, serve') or diag $srv->log;
    is($srv->stop, 0, 'exit 0');
  }
};

# Why user $uid (group $gid) cannot start bin/pagi-server from this checkout, or ''
sub unreadable_as ($uid, $gid) {
  my @need = (ROOT . '/bin/pagi-server', ROOT . '/lib/PAGI/Server.pm');
  pipe(my $r, my $w) or die $!;
  my $pid = fork // die $!;
  if (!$pid) {
    close $r;
    POSIX::setgid($gid);
    POSIX::setuid($uid);
    print {$w} join ', ', map { "it cannot read $_" } grep { !-r } @need;
    close $w;
    POSIX::_exit(0);
  }
  close $w;
  my $why = do { local $/; <$r> } // '';
  waitpid($pid, 0);
  return $why;
}

sub wait_children_of ($pid, $n) {
  require PAGI::Test::Load;
  my @k;
  wait_for(sub { @k = PAGI::Test::Load::children_of($pid); @k == $n }, 10);
  return @k;
}

done_testing;
