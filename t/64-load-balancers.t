use strict;
use warnings;
use experimental 'signatures';
use Test::More;
use File::Temp ();
use IO::Socket::IP;
use JSON::PP ();
use POSIX ();
use Time::HiRes ();
use lib 't/lib';
use PAGI::Test::Server qw(start_command http_connect wait_for slurp ROOT);
use PAGI::Test::WebSocket qw(ws_connect);
use PAGI::Test::Load qw(start_load children_of);

# pagi-server behind the load balancers people run, as the README's "Scaling out"
# configures them (the configurations below are the README's): HAProxy with
# send-proxy-v2 and HTTP health checks in front of two instances (one on TCP, one on
# a Unix socket; --proxy-protocol), and with `proto h2` in front of an --http2 one;
# nginx with an upstream group (TCP and Unix socket) and keep-alive connections to it
# (--proxy-headers). Through each: the scope's client and server as the balancer
# tells them (a client on 127.0.0.2; a spoofing one gets nothing), WebSocket, SSE;
# under load, a USR2 upgrade of each instance in turn, then one instance killed: no
# request fails (the balancers' retries: HAProxy's retries, retry-on and redispatch,
# nginx's proxy_next_upstream). The balancers run as the current user from a temp dir.

sub find_program ($name) {
  for my $dir (split(/:/, $ENV{PATH} // ''), '/usr/sbin', '/usr/local/sbin', '/sbin') {
    return "$dir/$name" if length $dir && -x "$dir/$name" && !-d _;
  }
  return undef;
}
my $HAPROXY = find_program('haproxy');
my $NGINX   = find_program('nginx');
plan skip_all => 'neither haproxy nor nginx is installed (script/install-deps installs both)'
  unless $HAPROXY || $NGINX;

# The new servers of USR2 upgrades outlive the ones that started them: adopt them
# (PR_SET_CHILD_SUBREAPER), as t/58 does, to reap them
eval { require 'syscall.ph'; syscall(&SYS_prctl, 36, 1, 0, 0, 0) };

my $dir = File::Temp->newdir;
my $APP = "$dir/app.pl";
my $JSON = JSON::PP->new->canonical;

# The instances' application: /health (200 once lifespan startup is done: a cheap,
# lifespan-aware health check; each call logged), /who (what the scope says, the
# connection it came on), /r/ID and /slow/ID (PAGI::Test::Load's requests), /ws, /sse
open(my $fh, '>', $APP) or die $!;
print {$fh} <<'APP';
use strict;
use warnings;
use experimental 'signatures';
use Future;
use IO::Async::Loop;
use JSON::PP ();
use Scalar::Util ();
STDERR->autoflush(1);
my $json = JSON::PP->new->canonical;

sub who ($scope) {
  return $json->encode({pid => $$, type => $scope->{type}, client => $scope->{client}, server => $scope->{server},
    scheme => $scope->{scheme}, http_version => $scope->{http_version},
    conn => Scalar::Util::refaddr($scope->{'pagi.transport'})});
}

sub respond ($send, $status, $body, @headers) {
  $send->({type => 'http.response.start', status => $status,
    headers => [['content-type', 'text/plain'], ['x-pid', $$], @headers]})
    ->then(sub { $send->({type => 'http.response.body', body => $body}) });
}

sub ($scope, $receive, $send) {
  my $type = $scope->{type};
  if ($type eq 'lifespan') {
    return $receive->()->then(sub {
      $scope->{state}{ready} = 1;
      $send->({type => 'lifespan.startup.complete'});
    })->then(sub { $receive->() })->then(sub { $send->({type => 'lifespan.shutdown.complete'}) });
  }
  if ($type eq 'websocket') {
    my $loop;
    $loop = sub {
      $receive->()->then(sub ($ev) {
        return Future->done if $ev->{type} eq 'websocket.disconnect';
        $send->({type => 'websocket.send', text => "echo: $ev->{text}"})->then($loop);
      });
    };
    return $receive->()->then(sub { $send->({type => 'websocket.accept'}) })
      ->then(sub { $send->({type => 'websocket.send', text => who($scope)}) })->then($loop)
      ->on_ready(sub { undef $loop });
  }
  if ($type eq 'sse') {
    # (one event, then open until the client leaves)
    return $send->({type => 'sse.start'})->then(sub { $send->({type => 'sse.send', data => who($scope)}) })
      ->then(sub { $receive->() });
  }
  my $path = $scope->{path};
  if ($path eq '/health') {
    print STDERR "health check $$\n";
    return respond($send, $scope->{state}{ready} ? 200 : 503, "ok\n");
  }
  return respond($send, 200, who($scope), ['content-type', 'application/json']) if $path eq '/who';
  return respond($send, 200, "ok $path\n") unless $path =~ m{\A/slow/};
  return IO::Async::Loop->new->delay_future(after => 0.2)->then(sub { respond($send, 200, "ok $path\n") });
};
APP
close $fh;

sub free_port () {
  my $s = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0, Listen => 1) or die "listen: $@";
  return $s->sockport;
}

sub alive ($pid) {
  open(my $fh, '<', "/proc/$pid/stat") or return 0;
  return (<$fh> // '') =~ /\) [^ZX] / ? 1 : 0;
}
sub reap () { 1 while waitpid(-1, POSIX::WNOHANG()) > 0 }

# An instance: bin/pagi-server on the app, with a pid file (USR2 writes the new
# server's there); listening on TCP (port) or a Unix socket (socket)
my @INSTANCES;
sub instance ($name, %opt) {
  my $pidfile = "$dir/$name.pid";
  my @where = $opt{socket} ? ('--socket', $opt{socket}) : ('--port', $opt{port});
  my $srv = start_command(command => [$^X, ROOT . '/bin/pagi-server', $APP, @where, '--pid', $pidfile,
    '--no-access-log', '--shutdown-timeout', 5, '--timeout', 5, @{$opt{args} || []}]);
  my $self = {name => $name, srv => $srv, pidfile => $pidfile, %opt};
  push @INSTANCES, $self;
  return $self;
}
sub pid_of ($inst) { slurp($inst->{pidfile}) =~ /\A([0-9]+)\n\z/ ? $1 : undef }
sub listening ($inst) {
  my $re = $inst->{socket} ? qr/listening on unix:\Q$inst->{socket}\E/ : qr{listening on http://127\.0\.0\.1:$inst->{port}/};
  return $inst->{srv}->wait_log($re, 15) && wait_for(sub { pid_of($inst) }, 5);
}

# A balancer: its command, output to a log
my @BALANCERS;
sub balancer (@command) {
  my $b = start_command(command => \@command);
  push @BALANCERS, $b;
  return $b;
}

END {
  local $?;    # (the reaping must not become the test's exit status)
  kill 'TERM', map { $_->pid } @BALANCERS;
  for my $inst (@INSTANCES) {
    my @pids = grep { $_ && alive($_) } pid_of($inst), $inst->{srv}->pid;
    kill 'KILL', @pids, map { children_of($_) } @pids;
  }
  reap();
}

# One response over a new connection from $local (127.0.0.2 by default: a client that
# is no proxy)
sub get ($port, $path, %opt) {
  my $c = eval { http_connect($port, local => $opt{local} // '127.0.0.2') } or return undef;
  my $req = "GET $path HTTP/1.1\r\nHost: lb.test\r\n";
  $req .= "$_->[0]: $_->[1]\r\n" for @{$opt{headers} || []};
  $c->send("$req\r\n");
  my ($r) = $c->read_responses(n => 1);
  return $r;
}
sub who ($port, %opt) {
  my $r = get($port, '/who', %opt);
  return $r && $r->{status} == 200 ? $JSON->decode($r->{body}) : {error => $r ? "status $r->{status}" : 'no response'};
}

# Requests until both instances answered (the balancer has both up); their pids
sub both_up ($port, $want = 2) {
  my %pids;
  wait_for(sub { my $w = who($port, local => '127.0.0.1'); $pids{$w->{pid}}++ if $w->{pid}; keys %pids >= $want }, 15);
  return keys %pids;
}

# A WebSocket through the balancer: the scope the app reported and an echo
sub websocket ($port, %opt) {
  my ($ws, $res) = ws_connect($port, path => '/ws', local => '127.0.0.2', %opt);
  return {error => 'no 101'} unless $res && $res->{status} == 101;
  my $who = ($ws->read_message // {})->{text};
  $ws->send_text('hello');
  my $echo = ($ws->read_message // {})->{text};
  $ws->close;
  return {who => defined $who ? $JSON->decode($who) : undef, echo => $echo};
}

# An event stream: the first event's data arrives while the stream is still open
sub event_stream ($port, %opt) {
  my $c = http_connect($port, local => '127.0.0.2');
  $c->send("GET /sse HTTP/1.1\r\nHost: lb.test\r\nAccept: text/event-stream\r\n\r\n");
  my $data;
  $c->_pump(Time::HiRes::time() + 5, sub { ($data) = $c->buffer =~ /\r\n\r\n.*?data: ([^\n]*)\n\n/s; defined $data });
  my $open = !$c->closed;
  $c->close;
  return {who => defined $data ? $JSON->decode($data) : undef, open => $open};
}

# Load through the balancer while $during runs; the merged result
sub under_load ($port, $seconds, $during) {
  my $load = start_load(port => $port, conns => 20, requests => 1_000_000, procs => 2, duration => $seconds,
    slow_every => 10, timeout => $seconds + 20);
  $during->();
  return $load->wait;
}

# USR2 to an instance: the new server writes its pid, the old one exits
sub upgrade ($inst) {
  my $old = pid_of($inst);
  kill 'USR2', $old;
  my $new;
  my $ok = wait_for(sub { $new = pid_of($inst); $new && $new != $old && !alive($old) }, 20);
  reap();
  return $ok ? $new : undef;
}

sub load_ok ($res, $what) {
  is($res->{errors}, 0, "$what: no request failed ($res->{ok} answered)") or diag explain $res->{error_list};
  cmp_ok($res->{ok}, '>=', 200, "$what: requests were answered throughout");
}

# ---- HAProxy ---------------------------------------------------------------------------

# The README's HAProxy configuration ("Scaling out"; the README's values below, the
# test's ports, paths and quicker checks in the test)
sub haproxy_config (%p) {
  return <<"CFG";
global
    maxconn 4096

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h              # WebSocket and SSE
    timeout http-keep-alive 4s
    retries 3                      # a failed connection or an empty answer
    retry-on all-retryable-errors  # is tried again,
    option redispatch 1            # on the other instance

frontend www
    bind $p{front}
    default_backend pagi

backend pagi
    balance roundrobin
    option httpchk
    http-check send meth GET uri /health ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    default-server send-proxy-v2 check $p{check}
    # pagi-server --proxy-protocol, on a port and on a Unix socket
    server a $p{a}
    server b unix\@$p{b}

frontend www_h2
    bind $p{front_h2}
    default_backend pagi_h2

backend pagi_h2
    # pagi-server --http2: HTTP/2 without TLS (h2c), many requests on a connection
    server c $p{c} proto h2 check $p{check}
CFG
}
my %HAPROXY_README = (front => ':80', front_h2 => ':8080', a => '127.0.0.1:5001', b => '/run/pagi/b.sock',
  c => '127.0.0.1:5003', check => 'inter 2s fall 2 rise 2');

# The README's fenced block of $lang in its section $section
sub readme_block ($section, $lang) {
  my $text = slurp(ROOT . '/README.md');
  my ($part) = $text =~ /^## \Q$section\E\n(.*?)(?=^## )/ms or return '';
  my ($block) = $part =~ /^```\Q$lang\E\n(.*?)^```$/ms;
  return $block // '';
}

SKIP: {
  skip 'haproxy is not installed (script/install-deps installs it)', 1 unless $HAPROXY;
  subtest 'HAProxy: send-proxy-v2, health checks, proto h2; USR2 and a kill under load' => sub {
    is(haproxy_config(%HAPROXY_README), readme_block('Scaling out', 'haproxy'), 'the README shows this configuration');
    my %port = map { ($_ => free_port()) } qw(front front_h2 a c);
    my %p = ((map { ($_ => "127.0.0.1:$port{$_}") } keys %port), b => "$dir/b.sock",
      check => 'inter 250ms fall 1 rise 1');
    my $ia = instance('a', port => $port{a}, args => ['--proxy-protocol']);
    my $ib = instance('b', socket => $p{b}, args => ['--proxy-protocol']);
    my $ic = instance('c', port => $port{c}, args => ['--http2']);
    ok(listening($_), "instance $_->{name} listens") or return diag $_->{srv}->log for $ia, $ib, $ic;
    open(my $cfg, '>', "$dir/haproxy.cfg") or die $!;
    print {$cfg} haproxy_config(%p);
    close $cfg;
    my $lb = balancer($HAPROXY, '-db', '-f', "$dir/haproxy.cfg");
    is(scalar(both_up($port{front})), 2, 'both instances answer through HAProxy') or return diag $lb->log;
    ok($ia->{srv}->wait_log(qr/health check/, 3) && $ib->{srv}->wait_log(qr/health check/, 3),
      'its HTTP health checks reach both (PROXY LOCAL)');

    my $w = who($port{front});
    is($w->{client}[0], '127.0.0.2', 'scope client: the client HAProxy names in its PROXY header');
    is_deeply($w->{server}, ['127.0.0.1', $port{front}], 'scope server: the address the client reached');
    my %seen;
    for (1 .. 4) { my $x = who($port{front}); $seen{$x->{pid}} = $x }
    is(scalar(keys %seen), 2, 'round robin over both');
    ok(!grep({ $_->{client}[0] ne '127.0.0.2' } values %seen), '... each has the client (the Unix one too)');
    my $ws = websocket($port{front});
    is($ws->{echo}, 'echo: hello', 'a WebSocket through HAProxy');
    is($ws->{who}{client}[0], '127.0.0.2', '... its scope\'s client');
    my $sse = event_stream($port{front});
    ok($sse->{who} && $sse->{open}, 'an event stream: the first event arrives, the stream open');
    is($sse->{who}{client}[0], '127.0.0.2', '... its client');
    my $h2 = who($port{front_h2});
    is($h2->{http_version}, '2', 'proto h2: HAProxy speaks h2c to the --http2 instance');

    my @upgraded;
    my $res = under_load($port{front}, 6, sub {
      select(undef, undef, undef, 0.8);
      push @upgraded, upgrade($ia);
      select(undef, undef, undef, 0.5);
      push @upgraded, upgrade($ib);
    });
    ok($upgraded[0] && $upgraded[1], 'USR2 to each instance in turn: each upgraded')
      or diag $ia->{srv}->log, $ib->{srv}->log;
    load_ok($res, 'USR2 of each instance under load');
    is(scalar(both_up($port{front})), 2, 'both new servers answer');

    my $killed = pid_of($ib);
    $res = under_load($port{front}, 3, sub {
      select(undef, undef, undef, 1);
      kill 'KILL', $killed;
    });
    load_ok($res, 'instance b killed (SIGKILL) under load');
    ok(!alive($killed), 'it is gone');
    is(who($port{front})->{pid}, pid_of($ia), 'instance a serves alone');
    # (USR1: HAProxy's graceful stop; TERM is its hard stop, exit 143)
    kill 'USR1', $lb->pid;
    is($lb->wait_exit(10), 0, 'HAProxy stops') or diag $lb->log;
  };
}

# ---- nginx -----------------------------------------------------------------------------

# The README's nginx configuration ("Scaling out"; the README's values below; the test
# adds a user when it runs as root, which nginx's workers would otherwise leave, and
# keeps nginx's files in its prefix, not root's)
sub nginx_config (%p) {
  my $test = $p{prefix} ? ($> == 0 ? 'user ' . getpwuid($>) . ";\n" : '') : '';
  my $paths = $p{prefix} ? "    access_log off;\n    client_body_temp_path $p{prefix}/tmp;\n    proxy_temp_path $p{prefix}/tmp;\n\n" : '';
  return <<"CFG";
${test}worker_processes $p{workers};
events { worker_connections 1024; }

http {
$paths    map \$http_upgrade \$connection_upgrade {
        default upgrade;
        ''      '';
    }

    upstream pagi {
        # pagi-server --proxy-headers, on a port and on a Unix socket
        server $p{c} max_fails=1 fail_timeout=2s;
        server unix:$p{d} max_fails=1 fail_timeout=2s;
        keepalive 32;                # connections kept open to the instances
        keepalive_timeout 4s;        # below pagi-server's --timeout (5 s)
    }

    server {
        listen $p{front};

        location / {
            proxy_pass http://pagi;
            proxy_http_version 1.1;
            proxy_set_header Host \$host;
            proxy_set_header Connection \$connection_upgrade;    # '' (keep-alive) or upgrade
            proxy_set_header Upgrade \$http_upgrade;             # WebSocket
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_buffering off;                                 # SSE, streamed bodies
            proxy_read_timeout 1h;                               # long-lived streams
            proxy_connect_timeout 1s;
            proxy_next_upstream error timeout http_502 http_503;  # retried on the other
            proxy_next_upstream_tries 3;
        }
    }
}
CFG
}
my %NGINX_README = (workers => 'auto', front => 80, c => '127.0.0.1:5001', d => '/run/pagi/b.sock');

SKIP: {
  skip 'nginx is not installed (script/install-deps installs it)', 1 unless $NGINX;
  subtest 'nginx: an upstream group with keep-alive; USR2 and a kill under load' => sub {
    my $prefix = "$dir/nginx";
    mkdir $prefix;
    mkdir "$prefix/tmp";
    is(nginx_config(%NGINX_README), readme_block('Scaling out', 'nginx'), 'the README shows this configuration');
    my %port = map { ($_ => free_port()) } qw(front c);
    my %p = (prefix => $prefix, workers => 1, front => "127.0.0.1:$port{front}", c => "127.0.0.1:$port{c}",
      d => "$dir/d.sock");
    my @trust = ('--proxy-headers', '--forwarded-allow-ips', '127.0.0.1,unix');
    my $ic = instance('c', port => $port{c}, args => \@trust);
    my $id = instance('d', socket => $p{d}, args => \@trust);
    ok(listening($_), "instance $_->{name} listens") or return diag $_->{srv}->log for $ic, $id;
    open(my $cfg, '>', "$prefix/nginx.conf") or die $!;
    print {$cfg} nginx_config(%p);
    close $cfg;
    my $lb = balancer($NGINX, '-p', $prefix, '-c', 'nginx.conf', '-g', "daemon off; pid $prefix/nginx.pid; error_log stderr;");
    is(scalar(both_up($port{front})), 2, 'both instances answer through nginx') or return diag $lb->log;

    my $w = who($port{front});
    is_deeply([$w->{client}[0], $w->{scheme}], ['127.0.0.2', 'http'], 'scope client: X-Forwarded-For\'s, as nginx sets it');
    $w = who($port{front}, headers => [['X-Forwarded-For', '6.6.6.6'], ['X-Forwarded-Proto', 'https']]);
    is_deeply([$w->{client}[0], $w->{scheme}], ['127.0.0.2', 'http'], 'a spoofing client gets nothing');
    my %conns;
    for (1 .. 12) { my $x = who($port{front}); $conns{"$x->{pid} $x->{conn}"}++ }
    cmp_ok(scalar(keys %conns), '<=', 4, '12 clients\' requests came over ' . keys(%conns)
      . ' connections: nginx keeps its connections to the instances');
    my $ws = websocket($port{front});
    is($ws->{echo}, 'echo: hello', 'a WebSocket through nginx');
    is($ws->{who}{client}[0], '127.0.0.2', '... its scope\'s client');
    my $sse = event_stream($port{front});
    ok($sse->{who} && $sse->{open}, 'an event stream: the first event arrives, the stream open (proxy_buffering off)');
    is($sse->{who}{client}[0], '127.0.0.2', '... its client');

    my @upgraded;
    my $res = under_load($port{front}, 6, sub {
      select(undef, undef, undef, 0.8);
      push @upgraded, upgrade($ic);
      select(undef, undef, undef, 0.5);
      push @upgraded, upgrade($id);
    });
    ok($upgraded[0] && $upgraded[1], 'USR2 to each instance in turn: each upgraded')
      or diag $ic->{srv}->log, $id->{srv}->log;
    load_ok($res, 'USR2 of each instance under load');

    my $killed = pid_of($ic);
    $res = under_load($port{front}, 3, sub {
      select(undef, undef, undef, 1);
      kill 'KILL', $killed;
    });
    load_ok($res, 'instance c killed (SIGKILL) under load');
    is(who($port{front})->{pid}, pid_of($id), 'instance d serves alone');
    kill 'TERM', $lb->pid;
    is($lb->wait_exit(10), 0, 'nginx stops') or diag $lb->log;
  };
}

done_testing;
