use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use File::Temp ();
use IO::Socket::IP;
use Time::HiRes ();
use lib 't/lib';
use PAGI::Test::Server qw(:all);
use PAGI::Test::Load qw(children_of);
use PAGI::Server;

# bin/pagi-server as a user runs it: --help documents every option the code accepts,
# --version names the backend, --port 0 with the port read from the startup line, a
# graceful SIGTERM with a request in flight, the access log, and startup errors.

my $dir = File::Temp->newdir;
sub write_file ($name, $text) {
  my $path = "$dir/$name";
  open(my $fh, '>', $path) or die "$path: $!";
  print {$fh} $text;
  close $fh;
  return $path;
}

my $APP = write_file('app.pl', <<'APP');
use strict;
use warnings;
use experimental 'signatures';
use Future::AsyncAwait;
use IO::Async::Loop;

async sub ($scope, $receive, $send) {
  return if $scope->{type} eq 'lifespan';
  my $body = '';
  while (1) {
    my $ev = await $receive->();
    last if $ev->{type} ne 'http.request';
    $body .= $ev->{body};
    last unless $ev->{more};
  }
  if ($scope->{path} eq '/slow') {
    my ($ms) = ($scope->{query_string} // '') =~ /ms=([0-9]+)/;
    print STDERR "SLOW-START\n";
    my $conn = $scope->{'pagi.connection'};
    my $gone = $conn->disconnect_future;
    await Future->wait_any($gone, IO::Async::Loop->new->delay_future(after => ($ms // 1000) / 1000));
    print STDERR 'SLOW-END ', ($conn->disconnect_reason // 'connected'), "\n";
  }
  my $status = $scope->{path} eq '/missing' ? 404 : 200;
  my $text = $scope->{method} eq 'POST' ? "posted " . length($body) : "hello";
  await $send->({type => 'http.response.start', status => $status,
    headers => [['content-type', 'text/plain'], ['content-length', length $text]]});
  await $send->({type => 'http.response.body', body => $text});
};
APP

subtest '--help documents every option the code accepts' => sub {
  my $r = run_cli(args => ['--help']);
  is($r->{exit}, 0, '--help exits 0');
  like($r->{stdout}, qr/\AUsage: pagi-server/, 'usage on stdout');
  # Every option the command line takes: the one table of them (PAGI::Server::Config)
  require PAGI::Server::Config;
  my @specs = map { $_->[0] } PAGI::Server::Config::cli_options();
  cmp_ok(scalar @specs, '>=', 50, scalar(@specs) . ' option specs in the table');
  my @missing;
  for my $s (@specs) {
    (my $names = $s) =~ s/[=:!+].*//;
    my @flags = map { length $_ == 1 ? "-$_" : "--$_" } split /\|/, $names;
    # a negatable option is documented as --no-NAME (its default as --NAME)
    push @flags, map { s/\A--/--no-/r } grep { /\A--/ } @flags if $s =~ /!\z/;
    for my $flag (@flags) {
      push @missing, $flag unless $r->{stdout} =~ /(?:^|[\s,(])\Q$flag\E(?=[\s,=:)]|$)/m;
    }
  }
  is_deeply(\@missing, [], 'every option name and alias appears in --help');
  my $bad = run_cli(args => ['--no-such-option']);
  is($bad->{exit}, 2, 'an unknown option exits 2');
  like($bad->{stderr}, qr/\Apagi-server: unknown option --no-such-option \(did you mean --[a-z-]+\?\); pagi-server --help lists every option\n\z/,
    '... in one line naming it, the nearest option and where the options are');
  $bad = run_cli(args => ['--keepalive-timout', 3, $APP]);
  is($bad->{exit}, 2, 'a misspelt option exits 2');
  like($bad->{stderr}, qr/\Apagi-server: unknown option --keepalive-timout \(did you mean --keepalive-timeout\?\); [^\n]*\n\z/,
    '... in one line naming the nearest option');
};

subtest '--version names the backend' => sub {
  my $r = run_cli(args => ['--version']);
  is($r->{exit}, 0, 'exits 0');
  my $b = PAGI::Server->backend;
  like($r->{stdout}, qr/\Apagi-server \(PAGI::Server\) [0-9.]+, backend \Q$b\E, perl v?5\.[0-9.]+\n\z/,
    "names the active backend ($b)");
  $r = run_cli(args => ['--version', '--backend', 'pp']);
  like($r->{stdout}, qr/backend PP/, '--backend pp: backend PP');
  $r = run_cli(args => ['--version', '--backend', 'fast']);
  isnt($r->{exit}, 0, '--backend with an unknown name fails');
  like($r->{stderr}, qr/--backend must be auto, xs or pp/, '... saying what is allowed');
};

subtest 'startup errors' => sub {
  my $r = run_cli(args => []);
  is($r->{exit}, 2, 'no app file: exit 2');
  like($r->{stderr}, qr/no application file given/, '... with a message');
  $r = run_cli(args => ["$dir/nope.pl", '--port', 0]);
  is($r->{exit}, 2, 'a missing app file: exit 2');
  like($r->{stderr}, qr/cannot (?:read|load) '\Q$dir\E\/nope\.pl'/, '... naming it');
  my $not_code = write_file('notcode.pl', "42;\n");
  $r = run_cli(args => [$not_code, '--port', 0]);
  is($r->{exit}, 2, 'an app file that returns no code reference: exit 2');
  like($r->{stderr}, qr/did not return a code reference/, '... saying so');
  my $broken = write_file('broken.pl', "sub { ;\n");
  $r = run_cli(args => [$broken, '--port', 0]);
  is($r->{exit}, 2, 'an app file with a syntax error: exit 2');
  like($r->{stderr}, qr/cannot load/, '... saying so');
  $r = run_cli(args => [$APP, '--port', 0, '--log-level', 'loud']);
  is($r->{exit}, 2, 'an invalid option value: exit 2');
  like($r->{stderr}, qr/log_level must be one of/, '... naming the option');
  my $taken = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0, Listen => 1) or die $@;
  $r = run_cli(args => [$APP, '--port', $taken->sockport]);
  isnt($r->{exit}, 0, 'a port already in use: non-zero exit');
  like($r->{stderr}, qr/cannot listen on 127\.0\.0\.1:[0-9]+/, '... saying where');
};

subtest '--port 0: the port from the startup line; -I; SIGTERM with a request in flight' => sub {
  my $libdir = File::Temp->newdir;
  mkdir "$libdir/My";
  open(my $fh, '>', "$libdir/My/Greeting.pm") or die $!;
  print {$fh} "package My::Greeting; sub text { 'from -I' } 1;\n";
  close $fh;
  my $app2 = write_file('app2.pl', <<'APP');
use My::Greeting;
my $app = do $ENV{PAGI_TEST_APP} or die $@ || $!;
sub { my ($scope) = @_; print STDERR 'GREETING ', My::Greeting::text(), "\n" if $scope->{type} eq 'lifespan'; $app->(@_) };
APP
  my $srv = start_cli(args => [$app2, '--port', 0, '-I', "$libdir", '--no-access-log'],
    env => {PAGI_TEST_APP => $APP});
  ok($srv->port, 'the port is read from "listening on http://127.0.0.1:PORT/"') or diag $srv->log;
  like($srv->log, qr/GREETING from -I/, '-I DIR puts DIR on @INC');
  my ($r) = http_exchange($srv->port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
  is($r->[0]{body}, 'hello', 'serves the app file');

  my $c = http_connect($srv->port);
  $c->send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
  ok($srv->wait_log(qr/SLOW-START/), 'the slow request is in the app');
  my $t0 = Time::HiRes::time();
  kill 'TERM', $srv->pid;
  ok(wait_for(sub { !IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $srv->port, Timeout => 1) }, 3),
    'after SIGTERM no new connection is accepted');
  my ($slow) = $c->read_responses(timeout => 8);
  is($slow && $slow->{status}, 200, 'the in-flight request completes');
  is($slow && $slow->{body}, 'hello', '... with its whole body');
  is($slow && $slow->{h}{connection}, 'close', '... and Connection: close');
  ok($c->wait_closed(3), '... then the connection is closed');
  is($srv->wait_exit(10), 0, 'exit status 0');
  cmp_ok(Time::HiRes::time() - $t0, '<', 8, 'promptly after the request finished');
  like($srv->log, qr/SIGTERM received/, 'the signal is logged');
  like($srv->log, qr/stopped after 2 request/, 'the stop is logged with the request count');
};

subtest 'SIGTERM: idle connections close at once; past --shutdown-timeout the rest are cut' => sub {
  my $srv = start_cli(args => [$APP, '--port', 0, '--no-access-log', '--shutdown-timeout', 1]);
  my $idle = http_connect($srv->port);
  $idle->send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
  my ($r) = $idle->read_responses;
  is($r->{status}, 200, 'an idle keep-alive connection');
  my $busy = http_connect($srv->port);
  $busy->send("GET /slow?ms=5000 HTTP/1.1\r\nHost: t\r\n\r\n");
  ok($srv->wait_log(qr/SLOW-START/), 'and a request that takes 5 s');
  my $t0 = Time::HiRes::time();
  kill 'TERM', $srv->pid;
  ok($idle->wait_closed(2), 'SIGTERM: the idle connection is closed at once');
  ok($busy->wait_closed(5), 'the busy one is closed after --shutdown-timeout 1');
  is($busy->buffer, '', '... without a response');
  ok($srv->wait_log(qr/SLOW-END server_shutdown/), "the app sees disconnect reason server_shutdown");
  is($srv->wait_exit(5), 0, 'exit 0');
  my $took = Time::HiRes::time() - $t0;
  cmp_ok($took, '<', 4, sprintf('within about the shutdown timeout (%.1fs)', $took));
  like($srv->log, qr/shutdown timeout: closing 1 connection/, 'the forced close is logged');
};

subtest '--access-log FILE: Common Log Format' => sub {
  my $log = "$dir/access.log";
  my $srv = start_cli(args => [$APP, '--port', 0, '--access-log', $log, '--max-body-size', 10]);
  ok($srv->port, 'started');
  my $c = http_connect($srv->port);
  $c->send("GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: t\r\nUser-Agent: t\r\n\r\n"
    . "HEAD /head HTTP/1.1\r\nHost: t\r\n\r\n"
    . "POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nabcd"
    . "GET /missing HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  my @r = $c->read_responses(n => 4, methods => [qw(GET HEAD POST GET)]);
  is(scalar @r, 4, 'four responses');
  my ($big) = http_exchange($srv->port, "POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n",
    read => 1, until_close => 1);
  is($big->[0]{status}, 413, 'a body over --max-body-size: 413');
  is($srv->stop, 0, 'exit 0');
  my @lines = split /\n/, slurp($log);
  is(scalar @lines, 5, 'one line per request');
  my $clf = qr{\A(\S+) (\S+) (\S+) \[([0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4})\] "([^"]*)" ([0-9]{3}) ([0-9]+|-)(?: .*)?\z};
  my @f = map { [$_ =~ $clf] } @lines;
  is(scalar(grep { @$_ } @f), 5, 'every line is Common Log Format: host ident user [time] "request" status bytes')
    or diag join "\n", @lines;
  is_deeply([map { [@$_[0 .. 2]] } @f], [(['127.0.0.1', '-', '-']) x 5], 'client address, - -');
  is_deeply([map { $_->[4] } @f], ['GET /a/b?x=1&y=2 HTTP/1.1', 'HEAD /head HTTP/1.1', 'POST /post HTTP/1.1',
    'GET /missing HTTP/1.0', 'POST /big HTTP/1.1'], 'request lines with the query string');
  is_deeply([map { $_->[5] } @f], [200, 200, 200, 404, 413], 'statuses');
  is_deeply([map { $_->[6] } @f], [5, '-', length('posted 4'), 5, length("Content Too Large\n")],
    'body bytes sent ("-" for none)');
  my @t = map { $_->[3] } @f;
  ok(@t == 5 && !grep({ !/ \+0000\z/ } @t), 'times in UTC');
};

subtest '--access-log-format combined: the line Apache writes' => sub {
  # Apache's own format string and our name for it must give the same lines
  my $apache = '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"';
  my %lines;
  for my $format ($apache, 'combined') {
    my $log = "$dir/combined-" . length($format) . '.log';
    my $srv = start_cli(args => [$APP, '--port', 0, '--access-log', $log, '--access-log-format', $format,
      '--max-body-size', 10]);
    ok($srv->port, "--access-log-format '$format'") or return diag $srv->log;
    my $c = http_connect($srv->port);
    $c->send("GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: t\r\nReferer: http://ref.example/page?q=1\r\n"
        . "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Test/1.0\r\n\r\n"
      . "HEAD /head HTTP/1.1\r\nHost: t\r\n\r\n"
      . "GET /missing HTTP/1.1\r\nHost: t\r\nReferer:\r\nUser-Agent: curl/7.88.1\r\n\r\n"
      . "GET /q\"x\\y%20z HTTP/1.1\r\nHost: t\r\nUser-Agent: say \"hi\" \\ caf\xc3\xa9\tend\r\n\r\n");
    my @r = $c->read_responses(n => 4, methods => [qw(GET HEAD GET GET)]);
    is(scalar @r, 4, 'four responses');
    my $c10 = http_connect($srv->port);
    $c10->send("POST /post HTTP/1.0\r\nContent-Length: 4\r\nUser-Agent: ua\r\n\r\nabcd");
    $c10->read_responses(until_close => 1);
    my ($big) = http_exchange($srv->port, "POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n", until_close => 1);
    is($big->[0]{status}, 413, 'a body over --max-body-size: 413');
    is($srv->stop, 0, 'exit 0');
    $lines{$format} = [split /\n/, slurp($log)];
  }
  # The time: Apache's %t, [day/Mon/year:HH:MM:SS zone], here in UTC
  my @t;
  for my $l (values %lines) {
    for (@$l) { push @t, $1 if s{ \[([0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} \+0000)\] }{ [TIME] } }
  }
  is(scalar @t, 12, 'each line has the time as [02/Dec/2026:20:58:02 +0000]');
  my @got = @{$lines{combined}};
  is_deeply(\@got, $lines{$apache}, "the name combined gives the lines of Apache's format string");
  require Time::Local;
  my %mon = map { (qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec))[$_] => $_ } 0 .. 11;
  my @off = map { m{\A(\d+)/(\w+)/(\d+):(\d+):(\d+):(\d+)} ? abs(time - Time::Local::timegm($6, $5, $4, $1, $mon{$2}, $3)) : 1e9 } @t;
  ok(!grep({ $_ > 120 } @off), '... which is now, in UTC') or diag "@t";
  # What Apache's mod_log_config writes for these requests: '-' for what is absent (no
  # body, no header), "" for an empty header; a quote, a backslash, a tab and bytes
  # above 0x7F escaped as \" \\ \t \xhh. (nginx's combined differs only there: its
  # escapes are \xHH, and a HEAD response's size is 0.)
  is_deeply(\@got, [
    '127.0.0.1 - - [TIME] "GET /a/b?x=1&y=2 HTTP/1.1" 200 5 "http://ref.example/page?q=1" "Mozilla/5.0 (X11; Linux x86_64) Test/1.0"',
    '127.0.0.1 - - [TIME] "HEAD /head HTTP/1.1" 200 - "-" "-"',
    '127.0.0.1 - - [TIME] "GET /missing HTTP/1.1" 404 5 "" "curl/7.88.1"',
    '127.0.0.1 - - [TIME] "GET /q\\"x\\\\y%20z HTTP/1.1" 200 5 "-" "say \\"hi\\" \\\\ caf\\xc3\\xa9\\tend"',
    '127.0.0.1 - - [TIME] "POST /post HTTP/1.0" 200 8 "-" "ua"',
    '127.0.0.1 - - [TIME] "POST /big HTTP/1.1" 413 18 "-" "-"',
  ], 'each line is exactly the Combined Log Format line') or diag join "\n", @got;
  # The default format escapes the request line the same way
  my $log = "$dir/default-escaped.log";
  my $srv = start_cli(args => [$APP, '--port', 0, '--access-log', $log]);
  http_exchange($srv->port, "GET /d\"q\xc3\xa9 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", until_close => 1);
  is($srv->stop, 0, 'exit 0');
  like(slurp($log), qr{\A127\.0\.0\.1 - - \[[^]]+\] "GET /d\\"q\\xc3\\xa9 HTTP/1\.1" 200 5 [0-9.]+\n\z},
    'the default format: the request line escaped as well');
};

subtest 'out of file descriptors: open connections are served, accepting pauses, one line a second' => sub {
  my $srv = start_cli(args => [$APP, '--port', 0, '--no-access-log'], ulimit_nofile => 32);
  ok($srv->port, 'started with at most 32 open files') or return diag $srv->log;
  my $kept = http_connect($srv->port);
  $kept->send("GET /before HTTP/1.1\r\nHost: t\r\n\r\n");
  my ($r) = $kept->read_responses;
  is($r && $r->{status}, 200, 'a keep-alive connection, opened first');
  my @hold;
  for (1 .. 60) {
    push @hold, IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $srv->port, Timeout => 2) // last;
  }
  cmp_ok(scalar @hold, '>', 32, scalar(@hold) . ' connections opened (more than the server can accept)');
  ok($srv->wait_log(qr/accept failed/, 3), 'EMFILE is logged');
  my $t0 = Time::HiRes::time();
  # While descriptors are short (3 s): the open connection is still served
  $kept->send("GET /during HTTP/1.1\r\nHost: t\r\n\r\n");
  ($r) = $kept->read_responses;
  is($r && $r->{status}, 200, 'meanwhile a request on the open connection is answered');
  Time::HiRes::sleep(3 - (Time::HiRes::time() - $t0));
  my $span = Time::HiRes::time() - $t0;
  my @lines = $srv->log_grep(qr/accept failed/);
  # Retried every 0.5 s, logged at most once a second: over ~3 s, 3 or 4 lines, not 6 or more
  cmp_ok(scalar @lines, '<=', int($span) + 2, sprintf('%d lines in %.1f s: at most one a second', scalar @lines, $span))
    or diag join "\n", @lines;
  cmp_ok(scalar @lines, '>=', 2, '... repeated while it lasts');
  like($lines[-1], qr/accept failed: Too many open files \([0-9]+ times since the last such line\); serving the open connections/,
    '... counting the failures between lines') or diag join "\n", @lines;
  @hold = ();
  ok(wait_for(sub { ($r) = http_exchange($srv->port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", timeout => 2); $r->[0] }, 8),
    'once descriptors are free again, requests are served');
  is($srv->stop, 0, 'exit 0');
};

subtest 'the soft open-file limit is raised to the hard limit at start (said at debug level)' => sub {
  my $hard = `sh -c 'ulimit -H -n'` =~ /([0-9]+)/ ? $1 : undef;
  plan skip_all => 'the hard open-file limit is below 128 or unlimited' unless $hard && $hard >= 128;
  for my $workers (0, 2) {
    my $run = start_command(command => ['/bin/sh', '-c', 'ulimit -S -n 64 && exec "$@"', 'sh',
      $^X, ROOT . '/bin/pagi-server', $APP, '--port', 0, '--no-access-log', '--log-level', 'debug', '--workers', $workers]);
    ok($run->wait_log(qr/listening on/, 15), ($workers ? '--workers 2' : 'one process') . ': started with a soft limit of 64')
      or return diag $run->log;
    like($run->log, qr/\[debug\] open-file limit raised from 64 to $hard \(the hard limit\)/, '... raised, at debug level');
    my @pids = ($run->pid, $workers ? children_of($run->pid) : ());
    wait_for(sub { @pids = ($run->pid, children_of($run->pid)); @pids == 1 + $workers }, 10) if $workers;
    for my $pid (@pids) {
      my ($soft) = slurp("/proc/$pid/limits") =~ /^Max open files\s+([0-9]+)/m;
      is($soft, $hard, ($pid == $run->pid ? 'the server' : "worker $pid") . " runs with $hard open files");
    }
    is($run->stop, 0, 'exit 0');
  }
  # Without BSD::Resource (hidden here): said, and the server starts all the same
  my $hide = File::Temp->newdir;
  mkdir "$hide/BSD";
  open(my $fh, '>', "$hide/BSD/Resource.pm") or die $!;
  print {$fh} "die qq{hidden by the test\\n};\n";
  close $fh;
  my $srv = start_cli(args => [$APP, '--port', 0, '--no-access-log', '--log-level', 'debug'],
    env => {PERL5LIB => "$hide" . (defined $ENV{PERL5LIB} ? ":$ENV{PERL5LIB}" : '')});
  ok($srv->port, 'without BSD::Resource: started') or return diag $srv->log;
  like($srv->log, qr/\[debug\] BSD::Resource is not installed \(Debian: libbsd-resource-perl\): the open-file limit is left as it is/,
    '... saying so at debug level');
  is($srv->stop, 0, 'exit 0');
};

subtest 'SIGUSR1 reopens the --access-log file (log rotation)' => sub {
  my $log = "$dir/rotated.log";
  my $srv = start_cli(args => [$APP, '--port', 0, '--access-log', $log]);
  ok($srv->port, 'started');
  http_exchange($srv->port, "GET /before HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  wait_for(sub { slurp($log) =~ m{GET /before } }, 5);    # flushed once a second
  rename($log, "$log.1") or die "rename: $!";
  kill 'USR1', $srv->pid;
  ok($srv->wait_log(qr/access log reopened: \Q$log\E/), 'the server says it reopened the file');
  http_exchange($srv->port, "GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  is($srv->stop, 0, 'exit 0');
  like(slurp("$log.1"), qr{GET /before }, 'the line before the signal is in the rotated file');
  unlike(slurp("$log.1"), qr{GET /after }, '... and not the one after');
  like(slurp($log), qr{\A127\.0\.0\.1 - - \[[^]]+\] "GET /after HTTP/1\.1" 200}, 'the new file has the line after');
};

subtest '--no-access-log and the defaults (stderr in development, none in production)' => sub {
  my $srv = start_cli(args => [$APP, '--port', 0, '-E', 'development']);
  http_exchange($srv->port, "GET /default HTTP/1.1\r\nHost: t\r\n\r\n");
  is($srv->stop, 0, 'exit 0');
  like($srv->log, qr{^127\.0\.0\.1 - - \[[^]]+\] "GET /default HTTP/1\.1" 200 5}m,
    'development: access log on stderr by default');
  $srv = start_cli(args => [$APP, '--port', 0]);
  http_exchange($srv->port, "GET /prod HTTP/1.1\r\nHost: t\r\n\r\n");
  is($srv->stop, 0, 'exit 0');
  like($srv->log, qr/mode production/, 'no terminal: production mode');
  unlike($srv->log, qr{"GET /prod}, 'production: no access log by default');
  $srv = start_cli(args => [$APP, '--port', 0, '--no-access-log']);
  http_exchange($srv->port, "GET /none HTTP/1.1\r\nHost: t\r\n\r\n");
  is($srv->stop, 0, 'exit 0');
  unlike($srv->log, qr{"GET /none}, '--no-access-log: no access line');
};

done_testing;
