package PAGI::Server::Config;
use strict;
use warnings;
use experimental 'signatures';
use Carp ();
use PAGI::Server::AccessLog ();
use PAGI::Server::Listeners ();
use PAGI::Server::Loop ();
use PAGI::Server::Spelling ();
use PAGI::Server::Proxy ();

our $VERSION = '0.001';
our @CARP_NOT = qw(PAGI::Server PAGI::Server::Runner Plack::Handler::PAGI::Server);

# THE option table of PAGI::Server (uvicorn's Config is the model): every option once,
# with its default, its check, its command-line spellings, upstream's names for it,
# its --help line, and whether it is fixed once the server listens. PAGI::Server->new
# and configure, the command line (PAGI::Server::Runner), --help and the POD below
# (t/03-config.t holds the POD to the table) all come from it.
#
# A checked set of options is a record (PAGI::Server::Record): a blessed array, one
# field per option and per derived value, made read-only. Connections read it through
# the index constants (use PAGI::Server::Config qw(MAX_BODY_SIZE)); a change made
# with configure makes a new record, which new connections get.
#
# Entry keys:
#   name     the option (PAGI::Server->new's name); field: its record field when the
#            upper-cased name would clash (env: ENV is Perl's)
#   type     whole | seconds | bool | string | enum | code | any
#   default  (absent: undef)
#   values   an enum's words
#   cli      Getopt::Long spec of its command-line spellings; runner => KEY: the
#            command line gives the value to PAGI::Server::Runner (KEY), not to the
#            server; from_cli: turns the command-line value into the option's
#   arg      the value's name in --help; flag: the whole left column, when the
#            spellings alone do not say it
#   help     its --help text; shown: the default as --help shows it ('': none)
#   group    its --help section
#   alias    upstream PAGI::Server's names for it (new/configure take them too)
#   fixed    cannot change once the server listens
#   refused  why an upstream option is refused (never ignored)
#   check    more checks: a sub ($value, $record) returning an error or undef

# The --help sections, in order, with the line that opens each
our @GROUPS = (
  app => 'Application:',
  where => "Listening (any mix; default 127.0.0.1:5000; under systemd socket activation,\n"
    . 'LISTEN_FDS, the sockets systemd passed instead):',
  proxy => 'Behind proxies and load balancers:',
  log => 'Logging:',
  proc => 'Processes:',
  life => 'Lifespan:',
  http2 => 'HTTP/2 (--http2; the h2 options also apply with it only):',
  ws => 'WebSocket compression (permessage-deflate, RFC 7692; on unless --no-ws-compression):',
  limits => 'Limits and timeouts (seconds; 0 = none for the timeouts):',
  refused => 'Upstream options not supported here (refused, saying why):',
  help => '',
);

our @TABLE;
BEGIN {
  @TABLE = (
    # ---- the application
    {name => 'app', type => 'code', cli => 'a|app=s', runner => 'app', arg => 'FILE', group => 'app',
      help => 'the application file (same as giving it as APP)'},
    {name => 'app_file', type => 'string', fixed => 1},
    {name => 'app_loader', type => 'code', fixed => 1},
    {name => 'psgi', type => 'bool', default => 0, cli => 'psgi=s', runner => 'psgi', arg => 'FILE',
      group => 'app', help => 'FILE is a PSGI application, whatever its name (PLACK_ENV is set to the '
        . 'mode; in development Plack::Middleware::Lint and StackTrace wrap it)'},
    {cli => 'e=s', runner => 'eval', arg => 'CODE', group => 'app',
      help => 'the application is what CODE returns (like perl -e)'},
    {cli => 'M=s@', runner => 'modules', arg => 'MODULE[=IMPORTS]', group => 'app',
      help => 'load MODULE before the application (repeatable; -MModule works too)'},
    {cli => 'I|lib=s@', runner => 'libs', arg => 'DIR', group => 'app', help => 'add DIR to @INC (repeatable)'},
    {name => 'env', field => 'mode', type => 'string', cli => 'E|env=s', runner => 'env', arg => 'MODE',
      group => 'app', shown => '',
      help => 'development, production or another word (default: PAGI_ENV, else development on a '
        . 'terminal, production without one). Development: sends after a response completed fail, '
        . 'text that looks like UTF-8 bytes is warned about, PAGI::Middleware::Lint wraps the app when '
        . 'installed. Production: no access log unless --access-log, sends after completion are '
        . 'ignored. The app sees it as $ENV{PAGI_ENV}',
      check => sub ($v, $c) { $v =~ /\A[\w.-]+\z/ ? undef : 'must be a word such as development or production' }},
    {name => 'validate_events', type => 'any'},
    {cli => 'default-middleware!', runner => 'default_middleware', flag => '--no-default-middleware',
      group => 'app', help => 'no PAGI::Middleware::Lint in development (--default-middleware: the default)'},
    {name => 'root_path', type => 'string', default => '', cli => 'root-path=s', arg => 'PATH', group => 'app',
      shown => '', help => "the scope's root_path (where the app is mounted)"},
    {name => 'scope_loop', type => 'bool', default => 0, cli => 'scope-loop', group => 'app', shown => '',
      help => '$scope->{pagi}{loop}: the IO::Async loop, for apps written for PAGI 0.1 '
        . "(PAGI::Simple's worker pool, stream_to_file)"},
    {cli => 'preload!', runner => 'preload', flag => '--no-preload', group => 'app',
      help => '(--workers) each worker loads APP itself: HUP then serves the code as it is on disk '
        . '(--preload: default)'},
    {cli => 's|server=s', runner => 'server', arg => 'CLASS', group => 'app',
      help => 'run APP on another PAGI server class (PAGI runner contract; default PAGI::Server)'},
    {name => 'on_listen', type => 'code'},
    # Upstream's extensions => {name => {}, ...}: the ones the server implements on
    # request (the others it advertises itself where they apply)
    {name => 'extensions', type => 'any', default => {}, check => sub ($v, $c) {
      return 'must be a hash reference, such as {fullflush => {}}' unless ref $v eq 'HASH';
      for my $name (sort keys %$v) {
        next if $name eq 'fullflush';
        return "$name is advertised by the server itself, where it applies (tls on TLS connections, "
          . 'websocket.http.response in WebSocket scopes)' if $name eq 'tls' || $name eq 'websocket.http.response';
        return "$name is not an extension this server implements (it implements fullflush)";
      }
      undef;
    }},
    {name => 'server_header', type => 'string', cli => 'server-header=s', arg => 'VALUE', group => 'app',
      fixed => 1, shown => 'PAGI::Server/VERSION',
      help => "the Server field of responses whose application gave none ('' for none)",
      # (the codec's own rule for a field value)
      check => sub ($v, $c) {
        require PAGI::Server::Protocol::HTTP1;
        my $err = PAGI::Server::Protocol::HTTP1::check_headers([['Server', $v]]);
        defined $err ? "is not a valid field value ($err)" : undef;
      }},

    # ---- where
    {name => 'host', type => 'string', default => '127.0.0.1', cli => 'o|H|host=s', arg => 'ADDR', group => 'where',
      fixed => 1, help => 'address to bind (0.0.0.0 or :: for all)'},
    {name => 'port', type => 'whole', default => 5000, cli => 'p|port=i', arg => 'N', group => 'where', fixed => 1,
      help => 'port (0 picks a free one)'},
    {name => 'listen', type => 'any', cli => 'listen=s@', arg => 'ADDR', group => 'where', fixed => 1,
      help => 'also listen on ADDR: HOST:PORT, [IPv6]:PORT, PORT, or a Unix socket: unix:PATH, /PATH, '
        . './PATH or a bare name (repeatable)'},
    {name => 'socket', type => 'string', cli => 'socket=s', arg => 'PATH', group => 'where', fixed => 1,
      help => 'listen on the Unix domain socket PATH (a stale socket file is replaced; removed again at exit)'},
    {name => 'socket_mode', type => 'any', cli => 'socket-mode=s', arg => 'MODE', group => 'where', fixed => 1,
      help => 'file mode of the Unix sockets, e.g. 0660'},
    {name => 'listener_backlog', type => 'whole', default => 2048, cli => 'b|listener-backlog=i', arg => 'N',
      group => 'where', fixed => 1, help => 'listen queue length'},
    {name => 'reuseport', type => 'bool', default => 0, cli => 'reuseport', group => 'where', fixed => 1,
      shown => '', help => 'SO_REUSEPORT; with --workers each worker listens on a socket of its own and the '
        . 'kernel spreads connections'},
    {name => 'ssl_cert', type => 'string', cli => 'ssl-cert=s', arg => 'FILE', group => 'where', fixed => 1,
      help => 'serve HTTPS (and wss) on every listener: the certificate (PEM, chain after the leaf) ...'},
    {name => 'ssl_key', type => 'string', cli => 'ssl-key=s', arg => 'FILE', group => 'where', fixed => 1,
      help => '... and its private key'},
    {name => 'ssl_ca', type => 'string', cli => 'ssl-ca=s', arg => 'FILE', group => 'where', fixed => 1,
      help => 'CA certificates for verifying client certificates'},
    {name => 'ssl_verify_client', type => 'enum', values => [qw(none optional require)], cli => 'ssl-verify-client=s',
      arg => 'MODE', group => 'where', fixed => 1, shown => '',
      help => 'none (default), optional (ask; report failures in the scope) or require (refuse clients '
        . 'without a valid one)'},
    {name => 'ssl_min_version', type => 'enum', values => [qw(TLSv1 TLSv1_1 TLSv1_2 TLSv1_3)],
      cli => 'ssl-min-version=s', arg => 'V', group => 'where', fixed => 1,
      help => 'oldest TLS version negotiated: TLSv1_2, TLSv1_3, ...'},
    {name => 'ssl_cipher_list', type => 'string', cli => 'ssl-cipher-list=s', arg => 'LIST', group => 'where',
      fixed => 1, help => 'an OpenSSL cipher list'},
    {name => 'loop', type => 'any', fixed => 1},
    {name => 'loop_type', type => 'string', cli => 'l|loop=s', arg => 'CLASS', group => 'where', fixed => 1,
      shown => '', check => sub ($v, $c) { PAGI::Server::Loop::type_error($v) }, help => 'IO::Async loop: Epoll, Poll, Select, Mojo, Glib, EV, ... or a full class name '
        . '(default: Epoll when installed)'},
    {name => 'backend', type => 'string', cli => 'backend=s', runner => 'backend',
      arg => 'NAME', group => 'where', fixed => 1, shown => '',
      check => sub ($v, $c) { $v =~ /\A(?:auto|xs|pp)\z/i ? undef : "must be one of auto, xs, pp, not '$v'" },
      help => 'codec backend: auto (default), xs (Rust) or pp (pure Perl); same as PAGI_SERVER_BACKEND'},

    # ---- behind proxies and load balancers
    {name => 'proxy_headers', type => 'bool', default => 0, cli => 'proxy-headers!', group => 'proxy',
      help => "a trusted peer's X-Forwarded-For, X-Forwarded-Proto and Forwarded headers set the scope's client "
        . 'and scheme (--no-proxy-headers: the default)'},
    {name => 'forwarded_allow_ips', type => 'any', cli => 'forwarded-allow-ips=s', arg => 'LIST', group => 'proxy',
      shown => '', help => 'the trusted proxies, comma-separated: IP addresses, networks (10.0.0.0/8), unix (peers on '
        . 'Unix sockets), * (all); default: FORWARDED_ALLOW_IPS, else 127.0.0.1,::1,unix',
      check => sub ($v, $c) { (PAGI::Server::Proxy::trusted_set($v))[1] }},
    {name => 'proxy_protocol', type => 'bool', default => 0, cli => 'proxy-protocol', group => 'proxy', shown => '',
      help => "every connection starts with a PROXY protocol header (v1 or v2: HAProxy's send-proxy, AWS NLB), read "
        . "before TLS and HTTP; its addresses are the scope's client and server. A connection without a valid "
        . 'one, or from an address not in --forwarded-allow-ips, is closed'},

    # ---- logging
    {name => 'access_log', type => 'any', default => \*STDERR, cli => 'access-log=s', runner => 'access_log', arg => 'FILE',
      group => 'log', shown => '',
      help => "append the access log to FILE ('-' = stderr; default: stderr in development, none in production)"},
    {cli => 'no-access-log', runner => 'no_access_log', group => 'log', help => 'no access log'},
    {name => 'access_log_format', type => 'string', default => 'pagi', cli => 'access-log-format=s', arg => 'F',
      group => 'log', shown => '', check => sub ($v, $c) { PAGI::Server::AccessLog::compile($v); undef },
      help => 'pagi (default: Common Log Format and the seconds taken), common, combined (Apache\'s), '
        . 'clf, tiny, or Apache-style fields such as \'%h %l %u %t "%r" %>s %b "%{Referer}i" %D\''},
    {name => 'log_level', type => 'enum', values => [qw(error warn info debug)], default => 'info',
      cli => 'log-level=s', arg => 'LEVEL', group => 'log', shown => '', help => 'error, warn, info (default) or debug'},
    {name => 'quiet', type => 'bool', default => 0, cli => 'q|quiet', group => 'log', shown => '', help => 'errors only'},

    # ---- processes
    {name => 'workers', type => 'whole', default => 0, cli => 'w|workers=i', arg => 'N', group => 'proc',
      fixed => 1, shown => '', from_cli => sub ($n) { $n > 1 ? $n : 0 },
      help => 'pre-fork N worker processes sharing the listening sockets, under a master '
        . '(0 or 1: one process, no master)'},
    {name => 'max_requests', type => 'whole', default => 0, cli => 'max-requests=i', arg => 'N', group => 'proc',
      shown => '', help => 'a worker that served N requests is replaced; without --workers, one worker runs '
        . 'under a master for it'},
    {name => 'max_connections', type => 'whole', default => 0, cli => 'max-connections=i', arg => 'N',
      group => 'proc', shown => '0 = no limit', help => 'connections per process; beyond it new ones get 503'},
    {name => 'heartbeat_timeout', type => 'seconds', default => 50, cli => 'heartbeat-timeout=f', arg => 'S',
      group => 'proc', shown => '50; 0 = off; else at least 2',
      help => '(--workers) a worker whose event loop has not turned for S seconds is killed and replaced',
      check => sub ($v, $c) {
        # (a worker reports once a second: a shorter limit would kill healthy workers)
        $v > 0 && $v < 2 ? "must be 0 (off) or at least 2 seconds, not '$v'" : undef }},
    {cli => 'D|daemonize', runner => 'daemonize', group => 'proc',
      help => 'run in the background (returns once listening)'},
    {name => 'pid_file', type => 'string', cli => 'pid=s', runner => 'pid_file', arg => 'FILE', group => 'proc',
      fixed => 1, help => "write the process id (the master's) to FILE; after a USR2 upgrade it names the new one"},
    {name => 'user', type => 'string', cli => 'user=s', arg => 'USER', group => 'proc', fixed => 1,
      help => 'bind as root, then run as USER (real, effective and saved ids; the application loads only then)'},
    {name => 'group', type => 'string', cli => 'group=s', arg => 'GROUP', group => 'proc', fixed => 1,
      shown => "USER's group", help => '... and as GROUP'},

    # ---- lifespan
    {name => 'lifespan_mode', type => 'enum', values => [qw(auto on off)], default => 'auto', alias => ['lifespan'],
      cli => 'lifespan=s', arg => 'MODE', group => 'life', shown => '',
      help => 'auto (default: used if the app supports it), on (the app must support it) or off '
        . '(never a lifespan scope)'},
    {name => 'lifespan_startup_timeout', type => 'seconds', default => 30, cli => 'lifespan-startup-timeout=f',
      arg => 'S', group => 'life', shown => '30; 0 = no limit', help => 'time lifespan startup may take'},

    # ---- limits and timeouts
    {name => 'keepalive_timeout', type => 'seconds', default => 5, alias => ['timeout'],
      cli => 'timeout|keepalive-timeout=f', arg => 'S', group => 'limits',
      help => 'idle time allowed before and between requests on a keep-alive connection (the two are one option)'},
    {name => 'request_timeout', type => 'seconds', default => 60, cli => 'request-timeout=f', arg => 'S',
      group => 'limits', help => 'no progress reading a body or writing a response'},
    {name => 'header_timeout', type => 'seconds', default => 30, cli => 'header-timeout=f', arg => 'S',
      group => 'limits', help => 'time allowed for a request head, from its first byte'},
    {name => 'shutdown_timeout', type => 'seconds', default => 30, cli => 'shutdown-timeout=f', arg => 'S',
      group => 'limits', help => 'grace period for in-flight requests on SIGINT/SIGTERM'},
    {name => 'ws_idle_timeout', type => 'seconds', default => 0, cli => 'ws-idle-timeout=f', arg => 'S',
      group => 'limits', help => 'a WebSocket without a frame either way for S closes'},
    {name => 'sse_idle_timeout', type => 'seconds', default => 0, cli => 'sse-idle-timeout=f', arg => 'S',
      group => 'limits', help => 'an event stream that sent nothing for S ends'},
    {name => 'ws_close_timeout', type => 'seconds', default => 5, cli => 'ws-close-timeout=f', arg => 'S',
      group => 'limits', help => 'time a WebSocket peer has to answer our Close'},
    {name => 'max_body_size', type => 'whole', default => 10 * 1024 * 1024, cli => 'max-body-size=i', arg => 'N',
      group => 'limits', help => 'largest request body in bytes, else 413; 0 = no limit'},
    {name => 'max_header_size', type => 'whole', default => 16384, cli => 'max-header-size=i', arg => 'N',
      group => 'limits', help => 'largest request head in bytes, else 431'},
    {name => 'max_headers', type => 'whole', default => 100, alias => ['max_header_count'],
      cli => 'max-header-count|max-headers=i', arg => 'N', group => 'limits',
      help => 'most request header fields, else 431 (the two are one option)'},
    {name => 'max_line', type => 'whole', default => 8192, cli => 'max-line=i', arg => 'N', group => 'limits',
      help => 'longest request line in bytes, else 414'},
    {name => 'max_ws_message_size', type => 'whole', default => 16 * 1024 * 1024, cli => 'max-ws-message-size=i',
      arg => 'N', group => 'limits', help => 'largest WebSocket message in bytes, else close 1009'},
    {name => 'max_ws_frame_size', type => 'whole', default => 0, cli => 'max-ws-frame-size=i', arg => 'N',
      group => 'limits', shown => '0: the message limit', help => 'largest WebSocket frame in bytes'},
    {name => 'max_receive_queue', type => 'whole', default => 64, cli => 'max-receive-queue=i', arg => 'N',
      group => 'limits', help => 'WebSocket messages the app has not received yet before reading stops',
      check => sub ($v, $c) { $v ? undef : 'must be at least 1' }},
    {name => 'write_high_watermark', type => 'whole', default => 1 << 18, cli => 'write-high-watermark=i',
      arg => 'N', group => 'limits', help => 'queued output bytes at which $send waits',
      check => sub ($v, $c) { $v ? undef : 'must be at least 1' }},
    {name => 'write_low_watermark', type => 'whole', default => 1 << 16, cli => 'write-low-watermark=i',
      arg => 'N', group => 'limits', help => '... until the queue is below N'},

    # ---- HTTP/2
    {name => 'http2', type => 'bool', default => 0, cli => 'http2', group => 'http2', fixed => 1,
      help => 'serve HTTP/2 too: h2 by ALPN on TLS ports (beside http/1.1), h2c on plain ones (the '
        . 'connection preface, or Upgrade: h2c)',
      check => sub ($v, $c) { $v && !eval { require PAGI::Server::Protocol::HTTP2; 1 }
        ? 'needs the HTTP/2 codec, which cannot load: ' . ($@ =~ s/\s+\z//r) . ' (the pure-Perl backend needs '
          . 'Protocol::HTTP2; Debian: libprotocol-http2-perl)' : undef }},
    {name => 'h2_max_concurrent_streams', type => 'whole', default => 100, cli => 'h2-max-concurrent-streams=i',
      arg => 'N', group => 'http2', help => 'streams a client may have open at once on a connection',
      check => sub ($v, $c) { $v < 2**32 ? undef : 'must be below 2**32' }},
    {name => 'h2_initial_window_size', type => 'whole', default => 65535, cli => 'h2-initial-window-size=i',
      arg => 'N', group => 'http2', help => 'request body bytes a client may send on a stream ahead of the app',
      check => sub ($v, $c) { $v < 2**31 ? undef : 'must be below 2**31' }},
    {name => 'h2_max_frame_size', type => 'whole', default => 16384, cli => 'h2-max-frame-size=i', arg => 'N',
      group => 'http2', help => 'largest frame a client may send (16384 to 16777215)',
      check => sub ($v, $c) { $v >= 16384 && $v < 2**24 ? undef : 'must be from 16384 to 16777215' }},
    {name => 'h2_max_header_list_size', type => 'whole', default => 65536, cli => 'h2-max-header-list-size=i',
      arg => 'N', group => 'http2', help => 'largest request head (names, values, 32 bytes a field), else 431',
      check => sub ($v, $c) { $v < 2**32 ? undef : 'must be below 2**32' }},
    {name => 'h2_enable_push', type => 'bool', default => 0, cli => 'h2-enable-push!', group => 'http2',
      help => 'leave SETTINGS_ENABLE_PUSH = 0 out of the settings (this server never pushes either way; '
        . '--no-h2-enable-push: the default)'},
    {name => 'h2_enable_connect_protocol', type => 'bool', default => 1, cli => 'h2-enable-connect-protocol!',
      flag => '--no-h2-enable-connect-protocol', group => 'http2',
      help => 'no extended CONNECT (RFC 8441): no WebSocket over HTTP/2 (--h2-enable-connect-protocol: '
        . 'the default)'},
    {name => 'h2_rst_rate_limit', type => 'any', default => [1000, 33], cli => 'h2-rst-rate-limit=s',
      arg => 'BURST,RATE', group => 'http2', shown => '1000,33',
      help => 'RST_STREAM a client may send: BURST at once, RATE a second after (CVE-2023-44487 rapid reset)',
      check => sub ($v, $c) { _burst_rate($v) ? undef : 'must be {burst => N, rate => N}, [N, N] or "N,N"' }},

    # ---- WebSocket compression
    {name => 'ws_compression', type => 'bool', default => 1, cli => 'ws-compression!', flag => '--no-ws-compression',
      group => 'ws', help => 'decline permessage-deflate: WebSocket messages go uncompressed (--ws-compression: '
        . 'the default)'},
    {name => 'ws_compression_level', type => 'whole', default => 6, cli => 'ws-compression-level=i', arg => 'N',
      group => 'ws', help => "zlib's level for the server's messages: 1 fastest, 9 smallest, 0 stored",
      check => sub ($v, $c) { $v <= 9 ? undef : 'must be from 0 to 9' }},
    {name => 'ws_compression_window_bits', type => 'whole', default => 12, cli => 'ws-compression-window-bits=i',
      arg => 'N', group => 'ws', help => "the server's window, 2**N bytes (9 to 15; server_max_window_bits)",
      check => sub ($v, $c) { $v >= 9 && $v <= 15 ? undef : 'must be from 9 to 15' }},
    {name => 'ws_compression_no_context_takeover', type => 'bool', default => 0,
      cli => 'ws-compression-no-context-takeover', group => 'ws',
      help => 'each message compressed on its own, both ways (server_ and client_no_context_takeover): '
        . 'less compression, no zlib state kept between messages'},

    # ---- upstream options without a mechanism here: refused, saying why, never ignored
    {name => 'sync_file_threshold', cli => 'sync-file-threshold=i', arg => 'N', group => 'refused',
      refused => 'file bodies are always read in 64 KiB pieces between writes; there is no thread pool to tune',
      help => 'a thread pool for reading files'},
    {cli => 'future-xs', group => 'refused',
      refused => 'Future::XS is not packaged here, and this server is not tested with it', help => 'Future::XS'},

    # ---- the command line's own
    {cli => 'h|help', runner => 'help', group => 'help', help => 'this help'},
    {cli => 'v|V|version', runner => 'version', group => 'help', help => 'version and active backend'},
  );
}

# The options (what new takes), the refused ones, the aliases
our (%OPTION, %REFUSED, %ALIAS);
BEGIN {
  for my $o (@TABLE) {
    next unless defined $o->{name};
    if ($o->{refused}) { $REFUSED{$o->{name}} = $o->{refused}; next }
    $OPTION{$o->{name}} = $o;
    $ALIAS{$_} = $o->{name} for @{$o->{alias} || []};
  }
}

# Values derived from the options once they are checked: what the request path reads
our @DERIVED;
BEGIN {
  @DERIVED = qw(
    level debug strict_sends warn_encoded is_tls scheme plain_http fullflush
    parse_limits ws_frame_limit request_timeout_s keepalive_timeout_s listen_specs h2_settings ws_deflate
    forwarded_trust
  );
}
use PAGI::Server::Record ((map { $_->{field} // $_->{name} } grep { defined $_->{name} && !$_->{refused} } @TABLE),
  @DERIVED);

# A timeout of 0 means "none" (upstream's meaning): about thirty years
use constant NEVER => 1e9;

# forwarded_allow_ips without the option or FORWARDED_ALLOW_IPS: the loopback
# addresses and Unix socket peers (a proxy on the same host)
use constant DEFAULT_ALLOW_IPS => '127.0.0.1,::1,unix';

our %LEVEL = (error => 1, warn => 2, info => 3, debug => 4);

# Upstream's ssl => {...} keys
my %SSL_KEY = (cert_file => 'ssl_cert', key_file => 'ssl_key', ca_file => 'ssl_ca',
  verify_client => 'ssl_verify_client', min_version => 'ssl_min_version', cipher_list => 'ssl_cipher_list');

# The record field of an option
my %INDEX;
{
  no strict 'refs';
  $INDEX{$_} = &{uc($OPTION{$_}{field} // $_)}() for keys %OPTION;
}

# ---- a checked record ---------------------------------------------------------------

# PAGI::Server::Config->new(%options): the checked, read-only record (croaks naming the
# option). $old: the record these options change (configure), $listening: whether
# the server listens already (options marked fixed cannot change then).
sub new ($class, $given, $old = undef, $listening = 0) {
  my %opt = %$given;
  upstream_names(\%opt);
  my @unknown = sort grep { !$OPTION{$_} } keys %opt;
  Carp::croak('PAGI::Server->new: unknown option(s): ' . join ' ', map { suggest($_) } @unknown) if @unknown;
  if ($listening) {
    my @fixed = grep { $OPTION{$_}{fixed} } sort keys %opt;
    Carp::croak("PAGI::Server->configure: @fixed cannot change once the server is listening") if @fixed;
  }
  my $self = bless [], $class;
  for my $name (keys %OPTION) {
    my $i = $INDEX{$name};
    $self->[$i] = exists $opt{$name} ? $opt{$name} : $old ? $old->[$i] : $OPTION{$name}{default};
  }
  $self->_check(\%opt, !$old);
  $self->_derive(\%opt, $old);
  Internals::SvREADONLY($_, 1) for @$self;
  Internals::SvREADONLY(@$self, 1);
  return $self;
}

# The value of an option by name (or upstream's name for it)
sub get ($self, $name) {
  my $o = $OPTION{$ALIAS{$name} // $name} or Carp::croak("PAGI::Server: no option '$name'");
  return $self->[$INDEX{$o->{name}}];
}

# Every option's value, by name
sub values_hash ($self) { return {map { ($_ => $self->[$INDEX{$_}]) } keys %OPTION} }

# Upstream's option names and shapes, rewritten to ours in place (and psgi_app => $app,
# short for app => $app, psgi => 1); refused ones croak, saying why
sub upstream_names ($opt) {
  if (exists $opt->{psgi_app}) {
    Carp::croak('PAGI::Server->new: app and psgi_app exclude each other') if exists $opt->{app};
    $opt->{app} = delete $opt->{psgi_app};
    $opt->{psgi} = 1;
  }
  for my $name (sort keys %$opt) {
    if (my $why = $REFUSED{$name}) { Carp::croak("PAGI::Server->new: $name is not supported: $why") }
    my $ours = $ALIAS{$name} or next;
    my $v = delete $opt->{$name};
    Carp::croak("PAGI::Server->new: $name and $ours are the same option; give one")
      if exists $opt->{$ours} && ($opt->{$ours} // '') ne ($v // '');
    $opt->{$ours} = $v;
  }
  delete $opt->{validate_events} if exists $opt->{validate_events} && !defined $opt->{validate_events};
  my $off = delete $opt->{disable_tls};
  if (exists $opt->{ssl}) {
    my $ssl = delete $opt->{ssl};
    if (defined $ssl) {
      Carp::croak('PAGI::Server->new: ssl must be a hash reference ({cert_file => ..., key_file => ...})')
        unless ref $ssl eq 'HASH';
      my @bad = sort grep { !$SSL_KEY{$_} } keys %$ssl;
      Carp::croak("PAGI::Server->new: unknown ssl key(s): @bad") if @bad;
      if (!$off) {
        for my $k (keys %$ssl) {
          my $v = $ssl->{$k};
          $v = $v ? 'require' : 'none' if $k eq 'verify_client' && ($v // '') !~ /\A(?:none|optional|require)\z/;
          $opt->{$SSL_KEY{$k}} = $v;
        }
      }
    }
  }
  elsif ($off) { delete @$opt{qw(ssl_cert ssl_key ssl_ca ssl_verify_client)} }
}

# "name (did you mean other?)" for an unknown option
sub suggest ($name) {
  my $best = nearest($name, keys %OPTION, keys %ALIAS);
  return defined $best ? "$name (did you mean $best?)" : $name;
}

# The candidate nearest to $name (Levenshtein distance under 4), or undef
sub nearest ($name, @candidates) { PAGI::Server::Spelling::nearest($name, 4, @candidates) }

# (a message that names its option already is given as it is)
sub _fail ($name, $why) { Carp::croak('PAGI::Server->new: ' . ($why =~ /\b\Q$name\E\b/ ? $why : "$name $why")) }

# h2_rst_rate_limit as [burst, rate]: upstream's {burst, rate}, a pair, or "burst,rate"
sub _burst_rate ($v) {
  my @p = ref $v eq 'HASH' ? @$v{qw(burst rate)} : ref $v eq 'ARRAY' ? @$v : defined $v ? split(/,/, $v, -1) : ();
  return undef unless @p == 2 && !grep { !defined || !/\A[0-9]{1,18}\z/ } @p;
  return [map { 0 + $_ } @p];
}

# Each option by its type and its own check, then the rules between options
sub _check ($self, $given, $new) {
  for my $o (sort { $a->{name} cmp $b->{name} } values %OPTION) {
    my ($name, $type) = @$o{qw(name type)};
    my $v = $self->[$INDEX{$name}];
    if ($type eq 'whole' || $type eq 'seconds') {
      _fail($name, "must be a non-negative number, not '" . ($v // 'undef') . "'")
        unless defined $v && $v =~ /\A[0-9]+(?:\.[0-9]+)?\z/;
      _fail($name, "must be a whole number, not '$v'") if $type eq 'whole' && $v !~ /\A[0-9]+\z/;
    }
    next unless defined $v;
    if ($type eq 'code') { _fail($name, 'must be a code reference') unless ref $v eq 'CODE' }
    elsif ($type eq 'enum') {
      _fail($name, 'must be one of ' . join(', ', @{$o->{values}}) . ", not '$v'")
        unless grep { $_ eq $v } @{$o->{values}};
    }
    if ($o->{check} and my $err = $o->{check}->($v, $self)) { _fail($name, $err) }
  }
  my ($app, $file, $loader) = @$self[APP, APP_FILE, APP_LOADER];
  if ($new || grep { exists $given->{$_} } qw(app app_file app_loader)) {
    if (defined $loader) {
      _fail('app_loader', 'excludes app and app_file') if defined $given->{app} || defined $file;
    }
    elsif (defined $file && !defined $given->{app}) {
      Carp::croak("PAGI::Server->new: cannot read the app_file '$file'") unless -r $file;
    }
    else {
      _fail('app', 'must be a code reference') unless ref $app eq 'CODE';
      _fail('app and app_file', 'exclude each other') if defined $file;
    }
  }
  _fail('write_low_watermark', 'must not be above write_high_watermark')
    if $self->[WRITE_LOW_WATERMARK] > $self->[WRITE_HIGH_WATERMARK];
  # Each file given is there and readable (upstream's ssl => {cert_file, key_file,
  # ca_file} in its words), before whether they go together
  for ([ssl_cert => 'certificate'], [ssl_key => 'key'], [ssl_ca => 'CA']) {
    my ($name, $what) = @$_;
    my $f = $self->[$INDEX{$name}] // next;
    _fail($name, "SSL $what file not found: $f ($name)") unless -e $f;
    _fail($name, "SSL $what file not readable: $f ($name)") unless -r _;
  }
  _fail('ssl_cert and ssl_key', 'go together')
    if (defined $self->[SSL_CERT] || defined $self->[SSL_KEY]) && !(defined $self->[SSL_CERT] && defined $self->[SSL_KEY]);
}

# What the request path reads, computed once: the log level, the mode's strictness,
# TLS, the parser's limits in its argument order, timeouts where 0 means none, and
# where to listen
sub _derive ($self, $given, $old) {
  my $level = $self->[QUIET] ? 'error' : $self->[LOG_LEVEL];
  $level = $self->[LOG_LEVEL] if $LEVEL{$self->[LOG_LEVEL]} < $LEVEL{$level};
  $self->[LEVEL] = $LEVEL{$level};
  $self->[DEBUG] = $self->[LEVEL] >= $LEVEL{debug} ? 1 : 0;
  # Modes: development checks strictly and warns; any other (production, none, ...)
  # is lenient where upstream is (a send after the response completed is ignored,
  # logged at debug)
  $self->[MODE] //= $ENV{PAGI_ENV} // 'development';
  Carp::croak("PAGI::Server->new: env must be a word such as development or production, not '$self->[MODE]'")
    unless $self->[MODE] =~ /\A[\w.-]+\z/;
  my $dev = $self->[MODE] eq 'development';
  my $strict = $self->[VALIDATE_EVENTS];
  $self->[STRICT_SENDS] = defined $strict ? ($strict ? 1 : 0) : ($dev ? 1 : 0);
  $self->[WARN_ENCODED] = $dev ? 1 : 0;
  $self->[SSL_VERIFY_CLIENT] //= 'none' if defined $self->[SSL_CERT];
  # The Server field: upstream's, this server's name and version, unless one was given
  # (undef or '': none)
  $self->[SERVER_HEADER] = 'PAGI::Server/' . ($PAGI::Server::VERSION // '0')
    unless $old || exists $given->{server_header};
  $self->[IS_TLS] = defined $self->[SSL_CERT] ? 1 : 0;
  $self->[SCHEME] = $self->[IS_TLS] ? 'https' : 'http';
  $self->[PLAIN_HTTP] = $self->[PSGI] ? 1 : 0;
  $self->[FULLFLUSH] = $self->[EXTENSIONS]{fullflush} ? 1 : 0;
  $self->[PARSE_LIMITS] = [@$self[MAX_HEADER_SIZE, MAX_HEADERS, MAX_LINE]];
  my $frame = $self->[MAX_WS_FRAME_SIZE] || $self->[MAX_WS_MESSAGE_SIZE];
  $frame = $self->[MAX_WS_MESSAGE_SIZE] if $frame > $self->[MAX_WS_MESSAGE_SIZE];
  $self->[WS_FRAME_LIMIT] = $frame;
  # The HTTP/2 session's settings (PAGI::Server::Protocol::HTTP2::new_session)
  $self->[H2_SETTINGS] = $self->[HTTP2] ? {
    max_concurrent_streams => $self->[H2_MAX_CONCURRENT_STREAMS], initial_window_size => $self->[H2_INITIAL_WINDOW_SIZE],
    max_frame_size => $self->[H2_MAX_FRAME_SIZE], max_header_list_size => $self->[H2_MAX_HEADER_LIST_SIZE],
    enable_push => $self->[H2_ENABLE_PUSH] ? 1 : 0, enable_connect_protocol => $self->[H2_ENABLE_CONNECT_PROTOCOL] ? 1 : 0,
    rst_rate_limit => _burst_rate($self->[H2_RST_RATE_LIMIT]), max_headers => $self->[MAX_HEADERS],
  } : undef;
  # permessage-deflate's settings (PAGI::Server::Protocol::WebSocket::negotiate_deflate), or
  # undef: declined
  my $no_takeover = $self->[WS_COMPRESSION_NO_CONTEXT_TAKEOVER] ? 1 : 0;
  $self->[WS_DEFLATE] = $self->[WS_COMPRESSION] ? {enabled => 1, level => $self->[WS_COMPRESSION_LEVEL],
    server_max_window_bits => $self->[WS_COMPRESSION_WINDOW_BITS], server_no_context_takeover => $no_takeover,
    client_no_context_takeover => $no_takeover} : undef;
  # The trusted proxies (forwarded_allow_ips; uvicorn's FORWARDED_ALLOW_IPS when not given)
  if (!defined $self->[FORWARDED_ALLOW_IPS]) {
    $self->[FORWARDED_ALLOW_IPS] = $ENV{FORWARDED_ALLOW_IPS} // DEFAULT_ALLOW_IPS;
    my $err = (PAGI::Server::Proxy::trusted_set($self->[FORWARDED_ALLOW_IPS]))[1];
    Carp::croak("PAGI::Server->new: FORWARDED_ALLOW_IPS (the environment's) $err") if defined $err;
  }
  $self->[FORWARDED_TRUST] = (PAGI::Server::Proxy::trusted_set($self->[FORWARDED_ALLOW_IPS]))[0];
  $self->[REQUEST_TIMEOUT_S]   = $self->[REQUEST_TIMEOUT] || NEVER;
  $self->[KEEPALIVE_TIMEOUT_S] = $self->[KEEPALIVE_TIMEOUT] || NEVER;
  # host and port are listened on when given, or when nothing else is
  my $hostport = exists $given->{host} || exists $given->{port} || ($old && $old->[LISTEN_SPECS]
    && grep { $_->{given} } @{$old->[LISTEN_SPECS]});
  my $moved = grep { exists $given->{$_} } qw(host port listen socket socket_mode);
  $self->[LISTEN_SPECS] = $old && !$moved ? $old->[LISTEN_SPECS] : PAGI::Server::Listeners::parse_specs(
    listen => $self->[LISTEN], socket => $self->[SOCKET], socket_mode => $self->[SOCKET_MODE],
    host => $self->[HOST], port => $self->[PORT], hostport => $hostport);
}

# ---- the command line -----------------------------------------------------------------

# The table's command-line entries: [Getopt::Long spec, entry]
sub cli_options { return map { [$_->{cli}, $_] } grep { $_->{cli} } @TABLE }

# Every command-line name (without '-'; negatable ones also as no-NAME), for "did you mean"
sub cli_names {
  return map {
    my ($n) = $_->{cli} =~ /\A([^=:!+]+)/;
    my $neg = $_->{cli} =~ /!\z/;
    map { ($_, $neg ? "no-$_" : ()) } split /\|/, $n;
  } grep { $_->{cli} } @TABLE;
}

1;

__END__

=head1 NAME

PAGI::Server::Config - the options of PAGI::Server, in one table

=head1 DESCRIPTION

The documentation, with the list of options, is in F<PAGI/Server/Config.pod>
(C<perldoc PAGI::Server::Config>).

=cut
