package PAGI::Server::Config;
use strict;
use warnings;
use experimental 'signatures';
use Carp ();
use PAGI::Server::AccessLog ();
use PAGI::Server::Listeners ();
use PAGI::Server::Loop ();
use PAGI::Server::Spelling ();

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
  log => 'Logging:',
  proc => 'Processes:',
  life => 'Lifespan:',
  limits => 'Limits and timeouts (seconds; 0 = none for the timeouts):',
  refused => 'Upstream options not supported here (refused, saying why):',
  help => '',
);

our @TABLE;
BEGIN {
  my $HTTP1_ONLY = 'HTTP/2 is not supported (HTTP/1.1 only)';
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

    # ---- upstream options without a mechanism here: refused, saying why, never ignored
    {name => 'http2', cli => 'http2', group => 'refused', refused => $HTTP1_ONLY, help => 'HTTP/2'},
    (map { +{name => "h2_$_", refused => $HTTP1_ONLY} }
      qw(max_concurrent_streams rst_rate_limit initial_window_size max_frame_size enable_push
      enable_connect_protocol max_header_list_size)),
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
    parse_limits ws_frame_limit request_timeout_s keepalive_timeout_s listen_specs
  );
}
use PAGI::Server::Record ((map { $_->{field} // $_->{name} } grep { defined $_->{name} && !$_->{refused} } @TABLE),
  @DERIVED);

# A timeout of 0 means "none" (upstream's meaning): about thirty years
use constant NEVER => 1e9;

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

=head1 NAME

PAGI::Server::Config - the options of PAGI::Server, in one table

=head1 SYNOPSIS

  my $cfg = PAGI::Server::Config->new({app => $app, port => 0});
  $cfg->get('keepalive_timeout');           # 5 (upstream's name, timeout, works too)

  use PAGI::Server::Config qw(MAX_BODY_SIZE);
  $cfg->[MAX_BODY_SIZE];                    # what a connection reads

=head1 DESCRIPTION

Internal, except for the list of options below. One table holds every option of
L<PAGI::Server> (its default, check, command-line spellings, upstream's names for it,
C<--help> line, and whether it is fixed once the server listens) and every
upstream option refused, with the reason. L<PAGI::Server>'s C<new> and C<configure>,
the command line (L<PAGI::Server::Runner>) and its C<--help> come from it; a test
(F<t/03-config.t>) holds this POD to it.

A checked set of options is a read-only record: a blessed array with a field per
option and per value derived from them (C<use PAGI::Server::Config qw(:fields)>
imports the index constants). C<configure> makes a new record; connections keep the
record they were made with.

To add an option: a row in C<@TABLE>, an C<=item> below, and the code that uses it
(reading C<< $cfg->[NAME] >>).

=head1 OPTIONS

Given to C<< PAGI::Server->new >> or C<configure>; unknown options are an error
(naming the nearest known one). Upstream PAGI::Server's names are accepted too:
C<timeout> (our C<keepalive_timeout>), C<max_header_count> (C<max_headers>),
C<lifespan> (C<lifespan_mode>), C<ssl> and C<disable_tls> (below). Upstream options
whose mechanism this server does not have are refused by name, saying why:
C<http2>, the C<h2_*> options, C<sync_file_threshold>. The command
line's spelling of each is in C<pagi-server --help>.

=over

=item app

The PAGI application, a code reference returning a L<Future>. Required, unless
C<app_file> or C<app_loader> is given.

=item app_loader

Instead of C<app>: a code reference that returns the application, called once the
listening sockets are bound and privileges dropped (C<user>, C<group>), so that the
application is never loaded as root; with C<workers>, in the master before the
workers are forked. The CLI uses it with C<--user>/C<--group>.

=item app_file

Instead of C<app>: a file whose last statement is the application (as
L<PAGI::Server/load_app> reads it). Without C<workers> it is loaded at once (with
C<user> or C<group>, once they are taken on); with C<workers> each worker loads it
after the fork and the master never does, so a HUP (new workers) runs the code as it
is on disk then, modules it uses included (the CLI's C<--no-preload>). A worker that
cannot load it exits as one whose lifespan startup failed: in the first generation
that stops the server; after a HUP the old workers keep serving.

=item psgi

C<psgi =E<gt> 1>: C<app> (or C<app_file>) is a PSGI application, served through
L<PAGI::Server::PSGI>; C<psgi_app =E<gt> $app> is short for C<app =E<gt> $app, psgi
=E<gt> 1>. WebSocket upgrades and event-stream requests then reach it as plain HTTP
requests. The CLI sets it for a C<.psgi> file or C<--psgi FILE>;
L<Plack::Handler::PAGI::Server> (C<plackup -s PAGI::Server>) uses C<psgi_app>.

=item host

The address to listen on. Default C<127.0.0.1>.

=item port

The port to listen on. Default C<5000>; C<0> picks a free port (see
L<PAGI::Server/port>).

=item loop

An L<IO::Async::Loop> to use (as C<< $loop->add($server) >> does). With C<workers>
the master runs on it, and each worker makes a fresh loop of its own (C<loop_type>).

=item loop_type

The name of a loop class (C<Epoll>, C<Poll>, C<Select>, C<Mojo>, C<Glib> or a full
class name). Default: Epoll when installed. Every signal the server handles works on
each of them (see L<PAGI::Server/SIGNALS>). C<new> refuses a name that is not a loop
name (upstream's words: C<Invalid loop_type>) or a loop that is not installed.

=item backend

C<auto>, C<xs> or C<pp>: which codec must be active (the choice is made when the
codec loads: C<PAGI_SERVER_BACKEND>); another one than the active croaks.

=item access_log

A filehandle for the access log, or a file name: the server appends to that file
and opens it again on SIGUSR1 (for log rotation). C<undef> disables it. Default
C<STDERR>.

=item access_log_format

C<pagi> (default: Common Log Format plus the seconds taken), C<common>, C<combined>,
C<clf> (upstream's default), C<tiny>, or a format of Apache's fields: C<%h> client,
C<%l> C<%u> (C<->), C<%t> time (C<[02/Dec/2026:20:58:02 +0000]>, UTC; C<[%t]> is
read as C<%t>), C<%r> request line, C<%m> method, C<%U> path, C<%q> C<?query>, C<%H>
protocol, C<%s> (also C<%E<gt>s>, C<%E<lt>s>) status, C<%b>/C<%B> body bytes
(C<->/C<0> for none), C<%d> seconds (3 decimals), C<%D> microseconds, C<%T>
seconds, C<%{Name}i> a request header (C<-> when absent), C<%%>. C<combined> is
Apache's C<%h %l %u %t "%r" %E<gt>s %b "%{Referer}i" "%{User-agent}i">, and its lines
are Apache's: what the client sent is escaped as Apache escapes it (C<\">,
C<\\>, C<\t>, C<\xhh> for bytes above 0x7F), in every format. See
L<PAGI::Server::AccessLog>.

=item log_level

C<error>, C<warn>, C<info> (default) or C<debug>. Log lines (C<[2026-12-02 20:58:02]
[info] ...>) are written with C<warn>, so they go to stderr and an embedding program
catches them with C<$SIG{__WARN__}>, as upstream's; events upstream names are worded
as it words them (C<PAGI application returned without starting a response>,
C<Lifespan app failed after startup: ...>, C<Lifespan startup timed out after N s>,
C<Connection rejected: at capacity (n/m)>). There is no log file option: redirect
stderr (the access log has its own file, C<access_log>).

=item quiet

Errors only (upstream's meaning).

=item env

The mode: C<development> (default: C<PAGI_ENV>, else development), C<production>,
or another word. In development a send after the response completed
(C<http.response.body>, C<.trailers>, C<.start>) fails, and WebSocket C<text> or SSE
C<data> that looks like UTF-8 bytes (only code points below 256 forming valid
multi-byte UTF-8) gets one warning per connection; otherwise such a send is ignored
with a C<debug> line, as upstream does in production. Whatever the PAGI
specification makes an error is one in every mode.

=item validate_events

Upstream's name: overrides what C<env> decides for sends after the response
completed: 1 strict, 0 lenient (undef: as the mode says).

=item request_timeout

Seconds without progress while reading a request body or writing a response before
the connection is closed (408 when nothing was answered yet); 0: none. Default 60.

=item header_timeout

Seconds from the first byte of a request head to its end (slow clients get 408).
Default 30.

=item keepalive_timeout

(Upstream: C<timeout>.) Seconds an idle connection is kept open, before the first
request and between requests; 0: no limit. Default 5.

=item shutdown_timeout

Seconds in-flight requests get to finish after SIGINT/SIGTERM (and that lifespan
shutdown may take). Default 30.

=item ws_idle_timeout

Seconds a WebSocket may go without a frame either way (it then gets a Close 1001,
and the app C<websocket.disconnect> 1006 C<idle_timeout>). Default 0: none.

=item sse_idle_timeout

Seconds an event stream may go without anything sent, keepalive comments included
(it ends; the app gets C<sse.disconnect> C<idle_timeout>). Default 0: none.

=item lifespan_mode

(Upstream: C<lifespan>.) C<auto> (default: lifespan if the app supports it), C<on>
(an app that does not support it stops startup) or C<off> (the app never sees a
lifespan scope).

=item lifespan_startup_timeout

Seconds lifespan startup may take before the server gives up starting; 0: no limit.
Default 30.

=item max_header_size

Largest request head in bytes (431 beyond). Default 16384.

=item max_headers

(Upstream: C<max_header_count>.) Most header fields in a request (431 beyond).
Default 100.

=item max_line

Longest request line in bytes (414 beyond). Default 8192.

=item max_body_size

Largest request body in bytes (413 beyond); 0 means no limit. Default 10 MiB
(10485760).

=item max_ws_message_size

Largest WebSocket message in bytes; a bigger one closes the connection with 1009
(the app sees 1006). Default 16 MiB (16777216).

=item max_ws_frame_size

Largest WebSocket frame in bytes (1009 beyond). Default 0: the message limit.

=item max_receive_queue

WebSocket messages received and not yet taken by the app: at this many the server
stops reading, so that TCP pushes back on the client. Default 64.

=item write_high_watermark

Bytes queued for a socket at which a C<$send> waits (also C<pagi.transport>'s high
mark). Default 256 KiB (262144).

=item write_low_watermark

Queued bytes below which a waiting C<$send> is released (C<pagi.transport>'s low
mark). Default 64 KiB (65536).

=item ws_close_timeout

Seconds a WebSocket peer has to answer the server's Close frame. Default 5.

=item scope_loop

Set C<< $scope->{pagi}{loop} >> to the server's IO::Async loop in every scope, for
applications written for PAGI 0.1 (PAGI::Simple's worker pool, C<stream_to_file>),
which read it (the lifespan scope included). Off by default: the key costs about
0.5% more instructions on the smallest request (the application is then called
through a wrapper that adds it, so that a server without it pays nothing), and a
scope that holds the loop can no longer be serialised as data.

=item server_header

The C<Server> field of every response whose application did not send one, as
upstream sends it: default C<PAGI::Server/VERSION> (this server's version); undef or
an empty string: none. It is the codec's, one value per process (set when a server
starts serving: with several servers in one process, the last one to listen decides).

=item extensions

Upstream's C<{name =E<gt> {}, ...}>: the extensions to advertise that the server
implements only when asked. C<fullflush =E<gt> {}>: HTTP and SSE scopes have
C<< $scope->{extensions}{fullflush} >>, and an C<http.fullflush> send writes what the
connection holds for the client at once (responses made while a read is processed
otherwise go out together at its end, in one write); its Future is a body send's
(it waits while the socket is backed up). Without it, C<http.fullflush> fails, as
the specification says. C<tls> and C<websocket.http.response> are advertised by the
server itself where they apply, and are refused here, as are names it does not
implement. Default: none.

=item root_path

The scope's C<root_path> (the mount point of the app). Default empty.

=item listen

More places to listen: a list (or one string) of C<HOST:PORT>, C<[IPv6]:PORT>,
C<PORT>, C<unix:PATH>, a path (starting with C</> or C<.>) or a bare name (a Unix
socket), or upstream's hashes C<{host =E<gt> H, port =E<gt> P}> and C<{socket =E<gt>
PATH, socket_mode =E<gt> 0660}>; an empty list is an error. C<host>/C<port> are
listened on as well when given, or when nothing else is. On a Unix socket the scope
has C<server =E<gt> [PATH, undef]> and no C<client> key. A socket file left behind by
a dead server is replaced (a live one is an error); the file is removed by
C<shutdown> (and at exit).

=item socket

A Unix domain socket path to listen on.

=item socket_mode

The Unix sockets' file mode (a number or an octal string such as C<'0660'>): each is
created owner-only, then given that mode.

=item workers

Pre-fork this many worker processes (default 0: a single process). The master binds
every listening socket once, before forking, and the workers share them (the kernel
gives each new connection to one of the workers that accept). Each worker creates a
fresh L<IO::Async> loop of its own (C<loop_type>; never its parent's) and TLS context
after the fork, and runs lifespan with C<is_worker =E<gt> 1> and
C<worker_num> 1..N; the master never runs the application. With C<workers> 0 lifespan
gets C<is_worker =E<gt> 0> and C<worker_num =E<gt> undef>. A worker that dies is started
again, with a delay that grows (0.1 s doubling to 5 s) while workers keep dying young.
Embedded (C<< $loop->add($server); $server->listen >>), C<listen> forks the workers
and returns, and the master runs on that loop (C<< $loop->run >>): its signals,
respawns, and C<shutdown>, whose Future is done once the workers are gone; C<run>
does the same on a loop of its own. See L<PAGI::Server::Prefork> for the master and
its signals. (On the command line, C<--workers 1> is one process, as upstream reads
it.)

=item max_requests

A worker that has served this many requests stops accepting, tells the master (which
starts its replacement at once), finishes its in-flight requests, answers one more
request on each open keep-alive connection with C<Connection: close>, and exits.
Without C<workers>, the server serves from one worker under a master for it (in
C<run>, or C<listen> in your own loop). Default 0 (never).

=item listener_backlog

The listen queue length. Default 2048.

=item reuseport

SO_REUSEPORT; with C<workers> each worker listens on a socket of its own, and the
kernel spreads new connections over them (the master keeps the address bound, not
listening).

=item heartbeat_timeout

With C<workers>: a worker whose event loop has not turned for this many seconds (a
blocking call, an endless computation) is killed (SIGKILL) and replaced, and the log
says so. Default 50; 0: off; otherwise at least 2 (workers report once a second). A
single process has no master to do this (under systemd, use C<WatchdogSec=> with a
supervisor of your own, or run with C<workers>). Independently, a retiring worker
(HUP, TTOU, C<max_requests>, an upgrade) that is still there C<shutdown_timeout> + 30
seconds after it was told is killed.

=item user

Once the sockets are bound (so that a port below 1024 works) and the pid file is
written, the process (with C<workers>, the master and so every worker) runs as this
user: real, effective and saved ids, and the user's own supplementary groups instead
of root's. Needs root, except in a process that already runs as it (the new server
of a USR2 upgrade). The application is loaded after the switch when it is given as
C<app_file> or C<app_loader> (the CLI does so).

=item group

As C<user>, for the group (default: the user's group).

=item pid_file

A file to write the process id to (the master's, with C<workers>): written once the
sockets are bound, before C<user>/C<group> are taken on (and then given to that
user); after a USR2 upgrade the new server writes its own there, once it serves.
Removed at exit while it still names this process (and its directory lets the
user remove it).

=item max_connections

The most connections a process (each worker) holds; a connection beyond it is
answered C<503 Service Unavailable> (text/plain, C<Connection: close>, C<Retry-After:
5>) and closed, while the open ones carry on; the log says C<Connection rejected: at
capacity (OPEN/MAX)>, as upstream's does. Default 0 (no limit).

=item ssl_cert

Serve TLS on every listener: the certificate (PEM, intermediates after the leaf),
with C<ssl_key>. Scopes then have C<scheme> C<https> (WebSocket: C<wss>) and the
C<tls> extension (C<server_cert>, C<client_cert_chain>, C<client_cert_name>,
C<client_cert_error>, C<tls_version>, C<cipher_suite>), which plain connections
never have. The handshake runs inside the loop without blocking and is bounded by
C<header_timeout>. Upstream's C<ssl =E<gt> {cert_file, key_file, ca_file,
verify_client, min_version, cipher_list}> sets these options (a true
C<verify_client> is C<require>); C<disable_tls =E<gt> 1> ignores C<ssl>. C<new>
checks each file given (C<ssl_cert>, C<ssl_key>, C<ssl_ca>), in upstream's words
(C<SSL certificate file not found: PATH>, C<... not readable>), before it asks for
the pair. See L<PAGI::Server::TLS>.

=item ssl_key

The private key of C<ssl_cert>.

=item ssl_ca

CA certificates (PEM) that client certificates are verified against.

=item ssl_verify_client

C<none> (default), C<optional> (ask for a client certificate, verify it against
C<ssl_ca>, report a failure in C<client_cert_error>) or C<require> (refuse the
handshake without a valid one).

=item ssl_min_version

The oldest TLS version negotiated: C<TLSv1>, C<TLSv1_1>, C<TLSv1_2>, C<TLSv1_3>.

=item ssl_cipher_list

An OpenSSL cipher list.

=item on_listen

A code reference called once with the server, right after the listening sockets are
bound (so after lifespan startup) and before the first connection is accepted;
C<< $server->port >> then gives the bound port. Useful with C<port =E<gt> 0>, e.g. to
tell a parent process where to connect.

=back

=cut
