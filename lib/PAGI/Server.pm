package PAGI::Server;
use strict;
use warnings;
use experimental 'signatures';
use Carp ();
use Errno qw(EAGAIN EWOULDBLOCK EINTR ECONNABORTED EMFILE ENFILE ENOBUFS ENOMEM);
use Fcntl qw(F_SETFL O_NONBLOCK);
use IO::Socket::IP;
use Scalar::Util qw(refaddr weaken blessed);
use Socket qw(IPPROTO_TCP TCP_NODELAY SOL_SOCKET SO_REUSEADDR SOCK_STREAM);
use Time::HiRes ();
use POSIX ();
use Future;
use IO::Async::Loop;
use IO::Async::Future;    # (loaded now: after user/group, @INC may not be readable)
use parent 'IO::Async::Notifier';

our $VERSION = '0.001';

# Coarse clock for deadlines, refreshed by the once-a-second tick
our $NOW = time;
our $BACKEND;

use PAGI::Server::Protocol::HTTP1;
use PAGI::Server::Connection;
use PAGI::Server::AccessLog;
use PAGI::Server::Handoff;    # (at compile time: it reads how this process was started)

my %LEVEL = (error => 1, warn => 2, info => 3, debug => 4);

# Every option new and configure take, under our name, with its default
my %DEFAULT = (
  host              => '127.0.0.1',
  port              => 5000,
  request_timeout   => 60,
  header_timeout    => 30,
  keepalive_timeout => 5,
  shutdown_timeout  => 30,
  max_header_size   => 16384,
  max_headers       => 100,
  max_line          => 8192,
  max_body_size     => 10 * 1024 * 1024,
  max_ws_message_size => 16 * 1024 * 1024,
  max_ws_frame_size => 0,             # 0: the message limit
  max_receive_queue => 64,
  ws_close_timeout  => 5,
  ws_idle_timeout   => 0,
  sse_idle_timeout  => 0,
  write_high_watermark => 1 << 18,
  write_low_watermark  => 1 << 16,
  listener_backlog  => 2048,
  reuseport         => 0,
  scope_loop        => 0,
  root_path         => '',
  log_level         => 'info',
  quiet             => 0,
  workers           => 0,
  max_requests      => 0,
  max_connections   => 0,
  heartbeat_timeout => 50,
  lifespan_mode     => 'auto',
  lifespan_startup_timeout => 30,
  access_log_format => 'pagi',
);
# Options without a default (or whose default is decided in _derive)
my @OTHER = qw(app app_file app_loader psgi loop loop_type access_log backend on_listen listen socket
  socket_mode ssl_cert ssl_key ssl_ca ssl_verify_client ssl_min_version ssl_cipher_list
  env validate_events user group pid_file);
my %KNOWN = map { $_ => 1 } keys %DEFAULT, @OTHER;

# Upstream PAGI::Server's names for our options (README: "Coming from PAGI::Server")
my %ALIAS = (
  timeout          => 'keepalive_timeout',
  max_header_count => 'max_headers',
);
# Upstream's ssl => {...} keys
my %SSL_KEY = (cert_file => 'ssl_cert', key_file => 'ssl_key', ca_file => 'ssl_ca',
  verify_client => 'ssl_verify_client', min_version => 'ssl_min_version',
  cipher_list => 'ssl_cipher_list');
# Upstream options whose mechanism this server does not have: refused, never ignored
my %REFUSED = (
  http2 => 'HTTP/2 is not supported (HTTP/1.1 only)',
  sync_file_threshold => 'file bodies are always read in 64 KiB pieces between writes; there is no thread pool to tune',
  extensions => 'extensions are advertised by the server itself (tls on TLS connections, websocket.http.response)',
  map({ ("h2_$_" => 'HTTP/2 is not supported (HTTP/1.1 only)') }
    qw(max_concurrent_streams rst_rate_limit initial_window_size max_frame_size enable_push
    enable_connect_protocol max_header_list_size)),
);
# What cannot change once the sockets are bound
my @LISTENING = qw(host port listen socket socket_mode ssl_cert ssl_key ssl_ca ssl_verify_client
  ssl_min_version ssl_cipher_list listener_backlog reuseport workers loop loop_type backend app_file
  app_loader user group pid_file);

# Numbers: a whole number, or any non-negative one
my @WHOLE = qw(port max_header_size max_headers max_line max_body_size max_ws_message_size
  max_ws_frame_size max_receive_queue write_high_watermark write_low_watermark listener_backlog
  workers max_requests max_connections);
my @SECONDS = qw(request_timeout header_timeout keepalive_timeout shutdown_timeout
  ws_close_timeout ws_idle_timeout sse_idle_timeout heartbeat_timeout lifespan_startup_timeout);

# A timeout of 0 means "none" (upstream's meaning): about thirty years
use constant NEVER => 1e9;

sub new ($class, %opt) {
  my $self = bless {%DEFAULT, state => {}, conns => {}, handshakes => {}, served => 0,
    running => 0}, $class;
  $self->{access_log} = \*STDERR unless exists $opt{access_log};
  $self->configure(%opt);
  return $self;
}

# new's options, and later changes to them (IO::Async::Notifier's configure). Takes our
# names and upstream PAGI::Server's (aliases, ssl => {...}, listen => [{...}]).
sub configure ($self, %opt) {
  my %notifier = map { exists $opt{$_} ? ($_ => delete $opt{$_}) : () } qw(notifier_name on_error);
  my $new = !exists $self->{app};    # from new: everything is checked
  _upstream_names(\%opt);
  my @unknown = sort grep { !$KNOWN{$_} } keys %opt;
  Carp::croak('PAGI::Server->new: unknown option(s): ' . join ' ', map { _suggest($_) } @unknown)
    if @unknown;
  if ($self->{listeners}) {
    my @fixed = grep { exists $opt{$_} } @LISTENING;
    Carp::croak("PAGI::Server->configure: @fixed cannot change once the server is listening") if @fixed;
  }
  if (exists $opt{access_log} || exists $opt{access_log_format}) {
    delete @$self{qw(access_log_path access_log_formatter)} if exists $opt{access_log};
  }
  @$self{keys %opt} = values %opt;
  $self->_derive(\%opt, $new);
  $self->SUPER::configure(%notifier);
  return;
}

# Upstream's option names and shapes, rewritten to ours in place (and psgi_app => $app,
# short for app => $app, psgi => 1)
sub _upstream_names ($opt) {
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
  if (exists $opt->{lifespan}) {
    Carp::croak('PAGI::Server->new: lifespan and lifespan_mode are the same option; give one')
      if exists $opt->{lifespan_mode};
    $opt->{lifespan_mode} = delete $opt->{lifespan};
  }
  if (exists $opt->{validate_events} && !defined $opt->{validate_events}) { delete $opt->{validate_events} }
  if (exists $opt->{ssl}) {
    my $ssl = delete $opt->{ssl};
    my $off = delete $opt->{disable_tls};
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
  elsif (delete $opt->{disable_tls}) {
    delete @$opt{qw(ssl_cert ssl_key ssl_ca ssl_verify_client)};
  }
}

# "name (did you mean other?)" for an unknown option
sub _suggest ($name) {
  my ($best, $dist) = (undef, 4);
  for my $k (keys %KNOWN, keys %ALIAS) {
    my $d = distance($name, $k);
    ($best, $dist) = ($k, $d) if $d < $dist;
  }
  return defined $best ? "$name (did you mean $best?)" : $name;
}

# Checks the options and computes what the request path reads (flags, limits)
sub _derive ($self, $given, $new) {
  if ($new || exists $given->{app} || exists $given->{app_file} || exists $given->{app_loader}) {
    delete $self->{app_given};
    if (defined $self->{app_loader}) {
      # Called once the sockets are bound and privileges dropped (see _start)
      Carp::croak('PAGI::Server->new: app_loader must be a code reference') unless ref $self->{app_loader} eq 'CODE';
      Carp::croak('PAGI::Server->new: app_loader excludes app and app_file')
        if defined $given->{app} || defined $self->{app_file};
    }
    elsif (defined $self->{app_file} && !defined $given->{app}) {
      # A file: loaded now, or with workers by each worker (so a HUP loads it anew);
      # with user/group, once privileges are dropped
      Carp::croak("PAGI::Server->new: cannot read the app_file '$self->{app_file}'") unless -r $self->{app_file};
      $self->{app} = $self->load_app($self->{app_file})
        unless $self->{workers} || defined $self->{user} || defined $self->{group};
    }
    else {
      Carp::croak('PAGI::Server->new: app must be a code reference') unless ref $self->{app} eq 'CODE';
      Carp::croak('PAGI::Server->new: app and app_file exclude each other') if defined $self->{app_file};
    }
  }
  $self->_wrap_app if $new || exists $given->{app} || exists $given->{scope_loop};
  Carp::croak('PAGI::Server->new: on_listen must be a code reference')
    if defined $self->{on_listen} && ref $self->{on_listen} ne 'CODE';
  if (defined $self->{backend} && $self->{backend} ne 'auto'
    && uc $self->{backend} ne $PAGI::Server::Protocol::HTTP1::IMPLEMENTATION) {
    Carp::croak("PAGI::Server->new: backend '$self->{backend}' requested but "
      . "$PAGI::Server::Protocol::HTTP1::IMPLEMENTATION is loaded; set PAGI_SERVER_BACKEND before loading PAGI::Server");
  }
  for my $k (@WHOLE, @SECONDS) {
    Carp::croak("PAGI::Server->new: $k must be a non-negative number, not '" . ($self->{$k} // 'undef') . "'")
      unless defined $self->{$k} && $self->{$k} =~ /\A[0-9]+(?:\.[0-9]+)?\z/;
  }
  for my $k (@WHOLE) {
    Carp::croak("PAGI::Server->new: $k must be a whole number, not '$self->{$k}'")
      unless $self->{$k} =~ /\A[0-9]+\z/;
  }
  Carp::croak("PAGI::Server->new: log_level must be one of error, warn, info, debug")
    unless $LEVEL{$self->{log_level}};
  Carp::croak("PAGI::Server->new: lifespan_mode must be auto, on or off, not '$self->{lifespan_mode}'")
    unless $self->{lifespan_mode} =~ /\A(?:auto|on|off)\z/;
  Carp::croak('PAGI::Server->new: write_low_watermark must not be above write_high_watermark')
    if $self->{write_low_watermark} > $self->{write_high_watermark};
  Carp::croak('PAGI::Server->new: write_high_watermark must be at least 1')
    unless $self->{write_high_watermark};
  Carp::croak('PAGI::Server->new: max_receive_queue must be at least 1') unless $self->{max_receive_queue};
  # (a worker reports once a second: a shorter limit would kill healthy workers)
  Carp::croak("PAGI::Server->new: heartbeat_timeout must be 0 (off) or at least 2 seconds, not '$self->{heartbeat_timeout}'")
    if $self->{heartbeat_timeout} > 0 && $self->{heartbeat_timeout} < 2;
  # quiet: errors only (upstream's meaning)
  my $level = $self->{quiet} ? 'error' : $self->{log_level};
  $level = $self->{log_level} if $LEVEL{$self->{log_level}} < $LEVEL{$level};
  $self->{level} = $LEVEL{$level};
  $self->{debug} = $self->{level} >= $LEVEL{debug} ? 1 : 0;

  # Modes: development checks strictly and warns; any other (production, none, ...)
  # is lenient where upstream is (a send after the response completed is ignored,
  # logged at debug)
  $self->{env} //= $ENV{PAGI_ENV} // 'development';
  Carp::croak("PAGI::Server->new: env must be a word such as development or production, not '$self->{env}'")
    unless $self->{env} =~ /\A[\w.-]+\z/;
  my $dev = $self->{env} eq 'development';
  $self->{strict_sends} = defined $self->{validate_events} ? ($self->{validate_events} ? 1 : 0) : ($dev ? 1 : 0);
  $self->{warn_encoded} = $dev ? 1 : 0;

  if (defined $self->{access_log} && !ref $self->{access_log}) {
    # A file name: opened here, and again on SIGUSR1 (after log rotation)
    $self->{access_log_path} = $self->{access_log};
    open(my $fh, '>>', $self->{access_log_path})
      or Carp::croak("PAGI::Server->new: cannot open the access log $self->{access_log_path}: $!");
    $self->{access_log} = $fh;
  }
  $self->{access_log_formatter} = PAGI::Server::AccessLog::compile($self->{access_log_format});

  Carp::croak('PAGI::Server->new: a loop object cannot be shared by worker processes; use loop_type')
    if $self->{workers} && $self->{loop};
  $self->{hostport_given} ||= exists $given->{host} || exists $given->{port} ? 1 : 0;
  $self->{listen_specs} = _listen_specs($self)
    if $new || grep { exists $given->{$_} } qw(host port listen socket socket_mode);
  if (defined $self->{ssl_cert} || defined $self->{ssl_key}) {
    Carp::croak('PAGI::Server->new: ssl_cert and ssl_key go together')
      unless defined $self->{ssl_cert} && defined $self->{ssl_key};
    Carp::croak("PAGI::Server->new: cannot read $_ '$self->{$_}'") for grep { !-r $self->{$_} } qw(ssl_cert ssl_key);
    Carp::croak('PAGI::Server->new: ssl_verify_client must be none, optional or require')
      unless ($self->{ssl_verify_client} //= 'none') =~ /\A(?:none|optional|require)\z/;
    Carp::croak("PAGI::Server->new: cannot read ssl_ca '$self->{ssl_ca}'")
      if defined $self->{ssl_ca} && !-r $self->{ssl_ca};
    require PAGI::Server::TLS;
    Carp::croak("PAGI::Server->new: ssl_min_version must be one of TLSv1, TLSv1_1, TLSv1_2, TLSv1_3, "
      . "not '$self->{ssl_min_version}'")
      if defined $self->{ssl_min_version} && $self->{ssl_min_version} !~ /\ATLSv1(?:_[123])?\z/;
    $self->{tls} = 1;
  }
  else { $self->{tls} = 0 }
  $self->{scheme} = $self->{tls} ? 'https' : 'http';
  # What the request path reads, computed once: the parser's limits in its argument
  # order, and timeouts where 0 means none
  $self->{parse_limits} = [@$self{qw(max_header_size max_headers max_line)}];
  $self->{ws_frame_limit} = $self->{max_ws_frame_size} || $self->{max_ws_message_size};
  $self->{ws_frame_limit} = $self->{max_ws_message_size} if $self->{ws_frame_limit} > $self->{max_ws_message_size};
  for my $k (qw(request_timeout keepalive_timeout)) { $self->{"${k}_s"} = $self->{$k} || NEVER }
}

# scope_loop: the application is called through a wrapper that puts the server's loop
# in the scope (pagi.loop, spec 0.1), so that a server without it pays nothing
sub _wrap_app ($self) {
  my $app = $self->{app_given} // $self->{app};
  return unless ref $app eq 'CODE';
  $self->{app_given} = $app;
  if ($self->{psgi}) {
    # A PSGI application: run through the PSGI adapter. Upgrade and event-stream
    # requests reach it as the plain HTTP requests they are (plain_http).
    require PAGI::Server::PSGI;
    $self->{plain_http} = 1;
    return $self->{app} = PAGI::Server::PSGI::to_app($app, server => $self);
  }
  return $self->{app} = $app unless $self->{scope_loop};
  weaken(my $server = $self);
  $self->{app} = sub { $_[0]{pagi}{loop} //= $server->{loop}; goto &$app };
}

# Where to listen: listen => [spec, ...], socket => PATH, and host/port (used when
# given, or when nothing else is). A spec is a string ('HOST:PORT', '[V6]:PORT',
# 'PORT', 'unix:PATH', a path starting with / or .) or upstream's hash ({host, port}
# or {socket, socket_mode}).
sub _listen_specs ($self) {
  my @specs;
  my @listen = ref $self->{listen} eq 'ARRAY' ? @{$self->{listen}} : grep { defined } $self->{listen};
  my $mode = _socket_mode($self->{socket_mode});
  for my $l (@listen) {
    if (ref $l eq 'HASH') {
      my @bad = sort grep { !/\A(?:host|port|socket|socket_mode)\z/ } keys %$l;
      Carp::croak("PAGI::Server->new: unknown key(s) in a listen spec: @bad") if @bad;
      if (defined $l->{socket}) {
        Carp::croak('PAGI::Server->new: a listen spec has either socket or host/port')
          if defined $l->{host} || defined $l->{port};
        push @specs, {path => $l->{socket}, mode => _socket_mode($l->{socket_mode}) // $mode};
        next;
      }
      Carp::croak('PAGI::Server->new: a TCP listen spec needs host and port')
        unless defined $l->{host} && defined $l->{port} && $l->{port} =~ /\A[0-9]+\z/;
      push @specs, {host => $l->{host}, port => $l->{port}};
      next;
    }
    if ($l =~ m{\Aunix:(.+)\z} || $l =~ m{\A([/.].*)\z}) { push @specs, {path => $1, mode => $mode}; next }
    my ($h, $p) = $l =~ /\A\[([^\]]+)\]:([0-9]+)\z/ ? ($1, $2)
      : $l =~ /\A([^:]*):([0-9]+)\z/ ? ($1, $2)
      : $l =~ /\A([0-9]+)\z/ ? ($self->{host}, $1)
      : $l !~ /:/ ? (undef, undef)
      : Carp::croak("PAGI::Server->new: cannot parse listen address '$l' (HOST:PORT, [IPv6]:PORT, PORT or a socket path)");
    # A bare name (no colon, not a number) is a Unix socket path, as upstream reads it
    if (!defined $p) { push @specs, {path => $l, mode => $mode}; next }
    push @specs, {host => length $h ? $h : $self->{host}, port => $p};
  }
  push @specs, {path => $self->{socket}, mode => $mode} if defined $self->{socket};
  unshift @specs, {host => $self->{host}, port => $self->{port}}
    if !@specs || $self->{hostport_given};
  return \@specs;
}

# socket_mode: a number (0660) or an octal string ('0660')
sub _socket_mode ($m) {
  return undef unless defined $m;
  return oct $m if $m =~ /\A0[0-7]{3}\z/;
  return $m if $m =~ /\A[0-9]+\z/ && $m <= 07777;
  Carp::croak("PAGI::Server->new: socket_mode must be a file mode such as 0660, not '$m'");
}

sub backend ($class_or_self) { $PAGI::Server::Protocol::HTTP1::IMPLEMENTATION }

# The loop the server runs on: the one it was added to ($loop->add($server)), else
# the loop option, else a new one (loop_type) that it adds itself to
sub _loop ($self) {
  return $self->{loop} if $self->{in_loop};
  my $loop = $self->{loop} // _make_loop($self->{loop_type});
  $loop->add($self);
  return $loop;
}

sub _add_to_loop ($self, $loop) {
  Carp::croak('PAGI::Server: added to a loop, but it was given another one (the loop option)')
    if $self->{loop} && $self->{loop} != $loop;
  Carp::croak('PAGI::Server: a server with workers runs its own processes: call run, not $loop->add')
    if $self->{workers} && !$self->{worker_num};
  $self->{loop}    = $loop;
  $self->{in_loop} = 1;
}

# $loop->remove($server): whatever still runs on that loop stops now
sub _remove_from_loop ($self, $loop) {
  $self->_stop_now if @{$self->{listeners} || []} || %{$self->{conns}};
  $self->_forget_signals;
  $self->{in_loop} = 0;
  delete $self->{loop};
}

# The loop class: a name like 'Epoll' (any case: upstream writes 'EPoll') or a full
# class; by default IO::Async's own choice (Epoll when installed). The loop is
# IO::Async's one shared loop, so an app that calls IO::Async::Loop->new (even
# while its file loads) gets the server's loop.
sub _make_loop ($type) {
  my $shared = $IO::Async::Loop::ONE_TRUE_LOOP;
  return IO::Async::Loop->new unless defined $type && length $type;
  my $class = loop_class($type);
  return $shared if $shared && ref $shared eq $class;
  my $loop = $class->new;
  $IO::Async::Loop::ONE_TRUE_LOOP = $loop;
  return $loop;
}

# The IO::Async::Loop class a loop name stands for, loaded; dies with one line naming
# the module and the installed loops when it is not installed
sub loop_class ($type) {
  Carp::croak("PAGI::Server: loop_type '$type' is not a loop name")
    unless $type =~ /\A[A-Za-z][A-Za-z0-9_]*(?:::[A-Za-z][A-Za-z0-9_]*)*\z/;
  my $class = $type =~ /::/ ? $type : "IO::Async::Loop::$type";
  if ($type !~ /::/) {
    # Match the installed loop's spelling (EPoll -> Epoll)
    my ($found) = grep { lc $_ eq lc $type } installed_loops();
    $class = "IO::Async::Loop::$found" if $found;
  }
  (my $file = "$class.pm") =~ s{::}{/}g;
  return $class if $INC{$file};
  if (!eval { require $file; 1 }) {
    my $err = $@;
    die "PAGI::Server: cannot load the loop $class: " . ($err =~ s/\s+\z//r) . "\n"
      unless $err =~ /\ACan't locate \Q$file\E in \@INC/;
    die "PAGI::Server: the loop '$type' needs $class, which is not installed; installed loops: "
      . join(', ', installed_loops()) . "\n";
  }
  return $class;
}

# The IO::Async::Loop::* classes found in @INC (short names)
sub installed_loops {
  my %seen;
  for my $dir (grep { !ref } @INC) {
    opendir(my $dh, "$dir/IO/Async/Loop") or next;
    for (readdir $dh) { $seen{$1} = 1 if /\A(\w+)\.pm\z/ }
  }
  delete $seen{$_} for qw(Select Poll);
  return ((sort keys %seen), 'Poll', 'Select');
}

sub port ($self) { $self->{bound_port} // $self->{port} }

# Upstream's accessors: the first Unix socket's path; every listener as
# {type => 'tcp', host, port} or {type => 'unix', path, socket_mode} (the bound port
# once listening); serving or not; TLS support installed
sub socket_path ($self) {
  my ($unix) = grep { defined $_->{path} } @{$self->{listen_specs}};
  return $unix ? $unix->{path} : undef;
}

sub listeners ($self) {
  my @bound = @{$self->{listeners} || []};
  my $i = 0;
  return [map {
    my $l = $bound[$i++];
    defined $_->{path} ? {type => 'unix', path => $_->{path}, socket_mode => $_->{mode}}
      : {type => 'tcp', host => $_->{host}, port => $l && $l->{tcp} ? $l->{port} : $_->{port}}
  } @{$self->{listen_specs}}];
}

sub is_running ($self) { $self->{running} ? 1 : 0 }

sub has_tls ($class_or_self) {
  return eval { require IO::Socket::SSL; require Net::SSLeay; 1 } ? 1 : 0;
}

sub has_http2 ($class_or_self) { 0 }

sub effective_max_connections ($self) { $self->{max_connections} }

sub env ($self) { $self->{env} }

# Levenshtein distance, for "did you mean" (here and in PAGI::Server::Runner)
sub distance ($a, $b) {
  my @prev = (0 .. length $b);
  for my $i (1 .. length $a) {
    my @cur = ($i);
    for my $j (1 .. length $b) {
      my $cost = substr($a, $i - 1, 1) eq substr($b, $j - 1, 1) ? 0 : 1;
      my $best = $prev[$j] + 1;
      $best = $cur[$j - 1] + 1 if $cur[$j - 1] + 1 < $best;
      $best = $prev[$j - 1] + $cost if $prev[$j - 1] + $cost < $best;
      push @cur, $best;
    }
    @prev = @cur;
  }
  return $prev[-1];
}

# ---- logging -------------------------------------------------------------------

sub log ($self, $level, $msg) {
  return if $LEVEL{$level} > $self->{level};
  my @t = localtime;
  printf STDERR "[%04d-%02d-%02d %02d:%02d:%02d] [%s] %s\n",
    $t[5] + 1900, $t[4] + 1, @t[3, 2, 1, 0], $level, ($self->{log_prefix} // '') . $msg;
}

sub access_log_line ($self, $line) {
  my $fh = $self->{access_log} or return;
  print {$fh} $line;
}

my ($log_time_at, $log_time) = (-1, '');
my @MON = qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec);

# Common Log Format time, rebuilt once a second
sub _log_time ($self) {
  my $now = time;
  return $log_time if $now == $log_time_at;
  my @t = gmtime($log_time_at = $now);
  return $log_time = sprintf '%02d/%s/%04d:%02d:%02d:%02d +0000',
    $t[3], $MON[$t[4]], $t[5] + 1900, @t[2, 1, 0];
}

sub _hires_time ($self) { Time::HiRes::time() }

# ---- lifespan ------------------------------------------------------------------

# Runs the lifespan startup; the Future fails only when the app says startup failed
# (or, with lifespan_mode on, declines lifespan), or when it takes longer than
# lifespan_startup_timeout. lifespan_mode off: the app never sees a lifespan scope.
sub _lifespan_startup ($self) {
  my $loop = $self->_loop;
  return Future->done if $self->{lifespan_mode} eq 'off';
  my $startup = $loop->new_future;
  my $shutdown_evt = $loop->new_future;
  my $life = $self->{lifespan} = {shutdown_event => $shutdown_evt};
  my $received = 0;
  my $receive = sub {
    return Future->done({type => 'lifespan.startup'}) if !$received++;
    return $shutdown_evt;
  };
  my $send = sub ($ev) {
    my $type = ref $ev eq 'HASH' ? $ev->{type} // '' : '';
    if ($type eq 'lifespan.startup.complete' || $type eq 'lifespan.startup.failed') {
      return Future->fail("$type sent twice or too late\n") if $startup->is_ready;
      $life->{supported} = 1;
      if ($type eq 'lifespan.startup.complete') { $startup->done }
      else { $startup->fail($ev->{message} // '') }
      return Future->done;
    }
    if ($type eq 'lifespan.shutdown.complete' || $type eq 'lifespan.shutdown.failed') {
      my $f = $life->{shutdown} or return Future->fail("$type before lifespan.shutdown\n");
      $self->log(error => 'lifespan shutdown failed: ' . ($ev->{message} // ''))
        if $type eq 'lifespan.shutdown.failed';
      $f->done unless $f->is_ready;
      return Future->done;
    }
    return Future->fail("unknown event type '$type' for a lifespan scope\n");
  };
  my $scope = {
    type  => 'lifespan',
    pagi  => {version => '0.3', spec_version => '0.3',
      is_worker => $self->{worker_num} ? 1 : 0, worker_num => $self->{worker_num}},
    state => $self->{state},
  };
  my $app_f = eval { $self->{app}->($scope, $receive, $send) };
  $app_f = Future->fail($@ || "application did not return a Future\n")
    unless blessed $app_f && $app_f->can('on_ready');
  $life->{app_future} = $app_f;
  $app_f->on_ready(sub ($f) {
    if (!$startup->is_ready) {
      # Raising or returning before startup means: no lifespan support (fatal when
      # lifespan_mode is on)
      my $why = $f->is_failed ? ': ' . (($f->failure)[0] =~ s/\s+\z//r) : '';
      $life->{supported} = 0;
      return $startup->fail('lifespan_mode is on, but the application does not support lifespan'
        . ($why || ' (it returned without signalling startup)')) if $self->{lifespan_mode} eq 'on';
      $self->log(info => "application does not support lifespan$why");
      $startup->done;
    }
    elsif ($f->is_failed) {
      $self->log(error => 'lifespan application error: ' . (($f->failure)[0] =~ s/\s+\z//r));
    }
    $life->{shutdown}->done if $life->{shutdown} && !$life->{shutdown}->is_ready;
  });
  my $limit = $self->{lifespan_startup_timeout} or return $startup;
  my $timeout = $loop->delay_future(after => $limit)->then(sub {
    Future->fail("lifespan startup did not finish within $limit seconds (lifespan_startup_timeout)\n");
  });
  return Future->wait_any($startup, $timeout);
}

sub _lifespan_shutdown ($self) {
  my $life = $self->{lifespan};
  return Future->done unless $life && $life->{supported} && !$life->{app_future}->is_ready;
  my $f = $life->{shutdown} = $self->_loop->new_future;
  $life->{shutdown_event}->done({type => 'lifespan.shutdown'});
  return Future->wait_any($f, $self->_loop->delay_future(after => $self->{shutdown_timeout} || NEVER));
}

# ---- listening and accepting -----------------------------------------------------

use constant {ACCEPT_BATCH => 64, WORKER_ACCEPT_BATCH => 4};

# Starts serving (upstream's embedding API: $loop->add($server); $server->listen->get):
# bind, lifespan startup, accept. Returns a Future of the server. INT and TERM then
# stop it gracefully and stop the loop.
sub listen ($self) {
  return Future->done($self) if $self->{running};
  return Future->fail("PAGI::Server->listen: a server with workers (or max_requests, which "
    . "recycles a worker process) runs its own processes: call run\n")
    if $self->{workers} || $self->{max_requests};
  my $loop = $self->_loop;
  # Bound first, so that a taken address fails before the application starts
  eval { $self->_start; 1 } or return Future->fail($@);
  return $self->_lifespan_startup->then(sub {
    $self->_announce;
    $self->_start_accepting;
    $self->_serving;
    $self->_on_signals([qw(INT TERM)], sub ($sig) {
      $self->log(info => "SIG$sig received");
      $self->shutdown->on_done(sub { $loop->stop });
    });
    Future->done($self);
  }, sub ($msg, @) {
    $self->_close_listeners;
    Future->fail("lifespan startup failed: $msg");
  });
}

# Binds every listening socket (once: in a pre-forked server the master does it and
# the workers share them), reports where, and calls on_listen
sub _open_listeners ($self) {
  $self->_start;
  $self->_announce;
}

# Everything before serving, in this order: the listening sockets (bound, or
# inherited), the pid file (while still root), the privilege drop, and then an
# application that was left to load (app_loader, or app_file with user/group), so
# that it loads as the user it runs as
sub _start ($self) {
  $self->_bind;
  $self->_write_pid_file if defined $self->{pid_file} && !$self->{upgrade};
  $self->_drop_privileges if defined $self->{user} || defined $self->{group};
  return if $self->{app} || $self->{workers} && !$self->{app_loader};
  $self->{app} = $self->{app_loader} ? $self->{app_loader}->() : $self->load_app($self->{app_file});
  Carp::croak('PAGI::Server: app_loader did not return a code reference') unless ref $self->{app} eq 'CODE';
  delete $self->{app_given};
  $self->_wrap_app;
}

sub _bind ($self) {
  return if $self->{listeners};
  if (my $got = PAGI::Server::Handoff::take_listen_fds()) { return $self->_adopt($got) }
  my @l;
  my $ok = eval {
    for my $spec (@{$self->{listen_specs}}) {
      push @l, defined $spec->{path} ? $self->_bind_unix($spec) : $self->_bind_tcp($spec);
    }
    1;
  };
  if (!$ok) {
    my $err = $@;
    close $_->{fh} for @l;
    $self->_unlink_sockets;
    die $err;
  }
  $self->_listening(\@l);
}

sub _listening ($self, $l) {
  $self->{listeners} = $l;
  my ($tcp) = grep { $_->{tcp} } @$l;
  $self->{bound_port} = $tcp ? $tcp->{port} : undef;
  # Check the certificate now, before any worker exists
  $self->{ssl_ctx} = PAGI::Server::TLS::context($self) if $self->{tls};
  $self->{ssl_cert_pem} = PAGI::Server::TLS::server_pem($self->{ssl_cert}) if $self->{tls};
}

# Sockets passed by systemd (socket activation) or by the server this one replaces
# (USR2): served instead of binding; the listen options describe them from now on
sub _adopt ($self, $got) {
  my $upgrade = $got->{ready} ? 1 : 0;
  my @l = map { PAGI::Server::Handoff::adopt($_, $upgrade) } @{$got->{fds}};
  if ($upgrade) {
    $self->{upgrade} = {ready => $got->{ready}, old_pid => $got->{old_pid}};
    # Unix socket files are this process's to remove at exit now
    push @{$self->{unlink}}, map { [$_->{path}, $$] } grep { !$_->{tcp} && $_->{path} =~ m{\A/} } @l;
  }
  else {
    my $given = $self->{hostport_given} || defined $self->{socket} || $self->{listen};
    $self->log(info => 'socket activation: serving the ' . @l . ' socket(s) systemd passed'
      . ($given ? ' (not the addresses given with --host/--port/--listen/--socket)' : ''));
    $self->log(warn => 'reuseport is not used with sockets from systemd (set ReusePort= in the .socket unit)')
      if $self->{reuseport};
  }
  $self->{listen_specs} = [map { $_->{tcp} ? {host => $_->{host}, port => $_->{port}} : {path => $_->{path}} } @l];
  $self->_listening(\@l);
}

sub _announce ($self) {
  # (the master of a pre-forked server has no loop: each worker makes its own)
  my $how = $self->{workers} ? ", $self->{workers} worker(s)" : ', loop ' . ref $self->_loop;
  for my $l (@{$self->{listeners}}) {
    my $where = $l->{tcp}
      ? sprintf('%s://%s:%d/', $self->{scheme}, $l->{host} =~ /:/ ? "[$l->{host}]" : $l->{host}, $l->{port})
      : "unix:$l->{path}" . ($self->{tls} ? ' (TLS)' : '');
    $where .= $l->{inherited} eq 'systemd' ? ' (socket from systemd)' : ' (socket from the previous server)'
      if $l->{inherited};
    $self->log(info => sprintf 'PAGI::Server %s (backend %s%s) listening on %s',
      $VERSION, $self->backend, $how, $where);
  }
  $self->{running} = 1;
  $self->{on_listen}->($self) if $self->{on_listen};
}

sub _close_listeners ($self) {
  for my $l (@{$self->{listeners} || []}) {
    $self->{loop}->unwatch_io(handle => $l->{fh}, on_read_ready => 1) if $self->{in_loop} && $l->{watched};
    close $l->{fh};
  }
  $self->{listeners} = [];
  $self->_unlink_sockets;
}

# reuseport: with workers, each worker listens on a socket of its own (SO_REUSEPORT:
# the kernel spreads new connections over them); the master only binds its socket,
# without listening, to hold the address for the workers it starts later
sub _bind_tcp ($self, $spec, $own = 0) {
  my $reuseport = $self->{reuseport};
  my $hold = $reuseport && $self->{workers} && !$own;
  # Not Blocking => 0 here: IO::Socket::IP then returns an unbound socket instead
  # of failing when the address is in use (and accept() on it fails forever)
  my $sock = IO::Socket::IP->new(
    LocalHost => $spec->{host},
    LocalPort => $spec->{port},
    Type      => SOCK_STREAM,
    ($hold ? () : (Listen => $self->{listener_backlog})),
    ReuseAddr => 1,
    ($reuseport ? (ReusePort => 1) : ()),
  ) or die "PAGI::Server: cannot listen on $spec->{host}:$spec->{port}: $@\n";
  $sock->blocking(0);
  return {fh => $sock, tcp => 1, host => $spec->{host}, port => $sock->sockport};
}

# In a worker of a reuseport server: its own listening sockets replace the master's
sub _own_listeners ($self) {
  for my $l (@{$self->{listeners}}) {
    next unless $l->{tcp} && ($l->{inherited} // '') ne 'systemd';
    my $own = $self->_bind_tcp({host => $l->{host}, port => $l->{port}}, 1);
    close $l->{fh};
    $l->{fh} = $own->{fh};
  }
}

sub _bind_unix ($self, $spec) {
  require IO::Socket::UNIX;
  my $path = $spec->{path};
  if (-S $path) {
    # A socket file left by a server that died is removed; a live one is an error
    die "PAGI::Server: cannot listen on unix:$path: another server is listening there\n"
      if IO::Socket::UNIX->new(Peer => $path, Type => Socket::SOCK_STREAM());
    unlink $path;
  }
  elsif (-e $path) { die "PAGI::Server: cannot listen on unix:$path: the file exists and is not a socket\n" }
  # socket_mode: created owner-only, then given its mode (never more open in between)
  my $mode = $spec->{mode};
  my $umask = defined $mode ? umask(0177) : undef;
  my $sock = IO::Socket::UNIX->new(Local => $path, Type => Socket::SOCK_STREAM(),
    Listen => $self->{listener_backlog});
  my $err = $!;
  umask($umask) if defined $umask;
  $sock or die "PAGI::Server: cannot listen on unix:$path: $err\n";
  push @{$self->{unlink}}, [$path, $$];
  if (defined $mode) {
    chmod($mode, $path) or die sprintf "PAGI::Server: cannot chmod %04o unix:%s: %s\n", $mode, $path, $!;
  }
  $sock->blocking(0);
  return {fh => $sock, tcp => 0, path => $path};
}

# user/group: once the sockets are bound (a port below 1024 needs root), the process
# (and with workers, every worker) runs as them: real, effective and saved ids, and
# the user's supplementary groups instead of root's. A process that already runs as
# them (the new server of a USR2 upgrade, started by one that dropped them) goes on.
sub _drop_privileges ($self) {
  my ($user, $group) = @$self{qw(user group)};
  my ($uid, $gid, $name);
  if (defined $user) {
    ($name, $uid, $gid) = (getpwnam $user)[0, 2, 3];
    die "PAGI::Server: no such user '$user'\n" unless defined $uid;
  }
  if (defined $group) {
    $gid = getgrnam $group;
    die "PAGI::Server: no such group '$group'\n" unless defined $gid;
  }
  my $as = join(':', grep { defined } $user, $group);
  if ($> != 0) {
    my $already = (!defined $uid || $< == $uid && $> == $uid)
      && (!defined $gid || (split ' ', $()[0] == $gid && (split ' ', $))[0] == $gid);
    die "PAGI::Server: user/group need root to switch to\n" unless $already;
    return $self->log(debug => "already running as $as");
  }
  $self->_load_before_drop;
  if (defined $gid) {
    # The user's own supplementary groups (as initgroups(3) gives them), none of root's
    my @groups = ($gid);
    if (defined $name) {
      while (my ($g, undef, $id, $members) = getgrent) {
        push @groups, $id if $id != $gid && grep { $_ eq $name } split ' ', $members;
      }
      endgrent;
    }
    $) = "$gid @groups";
    POSIX::setgid($gid) or die "PAGI::Server: cannot switch to group $gid: $!\n";
  }
  chown $uid // -1, $gid // -1, $self->{pid_written} if $self->{pid_written};
  if (defined $uid) {
    POSIX::setuid($uid) or die "PAGI::Server: cannot switch to user '$user': $!\n";
    die "PAGI::Server: still running as root after switching to '$user'\n"
      if ($> == 0 || $< == 0) && $uid != 0;
  }
  $self->log(info => "running as $as");
}

# What the loops and the server load on first use, loaded while root can still read
# every directory of @INC: the user may not be able to (a checkout only its owner
# may enter, as mktemp makes them), and `require` dies on a directory it cannot
# search. A loop is made and thrown away (what a worker's loop will load as it is
# made: its class, IO::Async's choice or --loop's; Metrics::Any's adapter), and the
# timer queue a loop loads with its first timer is loaded. Loops that wrap another
# event system (Mojo, Glib, EV) are only loaded: their underlying loop is shared.
sub _load_before_drop ($self) {
  my $type = $self->{loop_type};
  my $class = defined $type && length $type ? loop_class($type) : undef;
  if (!$class || $class =~ /\AIO::Async::Loop::(?:Epoll|Poll|Select)\z/) {
    my $probe = $class ? $class->new : IO::Async::Loop->really_new;
    undef $probe;
  }
  require IO::Async::Internals::TimeQueue;
  require File::Spec;
}

# pid_file: written once the sockets are bound (before privileges are dropped; then
# given to the user, so that the new server of a USR2 upgrade can write it), by that
# new server once it serves, and removed at exit only while it names this process
sub _write_pid_file ($self) {
  my $file = $self->{pid_file};
  my $tmp = "$file.$$.tmp";
  # Replaced whole where the directory allows it, else written in place
  if (open(my $fh, '>', $tmp)) {
    print {$fh} "$$\n";
    close $fh && rename($tmp, $file) and return $self->{pid_written} = $file;
    unlink $tmp;
  }
  open(my $fh, '>', $file) or die "PAGI::Server: cannot write the pid file $file: $!\n";
  print {$fh} "$$\n";
  close $fh or die "PAGI::Server: cannot write the pid file $file: $!\n";
  $self->{pid_written} = $file;
}

sub _remove_pid_file ($self) {
  my $file = delete $self->{pid_written} or return;
  open(my $fh, '<', $file) or return;
  my $pid = <$fh> // '';
  close $fh;
  return unless $pid =~ /\A([0-9]+)\n?\z/ && $1 == $$;
  unlink $file or $self->log(debug => "cannot remove the pid file $file: $!");
}

# At start, the soft limit of open files is raised to the hard limit (as nginx does):
# each connection is a descriptor
sub _raise_nofile ($self) {
  if (!eval { require BSD::Resource; 1 }) {
    return $self->log(debug => 'BSD::Resource is not installed (Debian: libbsd-resource-perl): '
      . 'the open-file limit is left as it is');
  }
  my $NOFILE = BSD::Resource::RLIMIT_NOFILE();
  my ($soft, $hard) = BSD::Resource::getrlimit($NOFILE);
  return unless defined $soft;
  my $inf = BSD::Resource::RLIM_INFINITY();
  if ($soft == $hard || $soft == $inf) { return $self->log(debug => "open-file limit: $soft (the hard limit)") }
  my $want = $hard;
  if ($hard == $inf) {
    # Linux refuses an infinite limit of files: its ceiling is fs.nr_open
    my $max = 0;
    if (open(my $fh, '<', '/proc/sys/fs/nr_open')) { $max = $1 if (<$fh> // '') =~ /([0-9]+)/ }
    return $self->log(debug => "open-file limit: $soft (the hard limit is unlimited)") unless $max > $soft;
    $want = $max;
  }
  if (BSD::Resource::setrlimit($NOFILE, $want, $hard)) {
    $self->log(debug => "open-file limit raised from $soft to $want (the hard limit)");
  }
  else { $self->log(debug => "open-file limit: $soft; cannot raise it to $want: $!") }
}

# Watches the listening sockets (in a worker: after its fork and lifespan startup)
sub _start_accepting ($self) {
  $self->_watch_listeners;
  $self->_tick_timer;
}

sub _watch_listeners ($self) {
  weaken(my $weak = $self);
  for my $l (@{$self->{listeners}}) {
    $l->{watched} = 1;
    $self->_loop->watch_io(handle => $l->{fh}, on_read_ready => sub { $weak->_accept($l) if $weak });
  }
}

# Out of file descriptors (or memory): the pending connection stays in the backlog
# and the listener stays readable, so retrying at once would spin (and flood the
# log). Stop watching the listeners for a moment instead, while the connections
# already open are served; one warning a second at most, however many pauses.
use constant {ACCEPT_PAUSE => 0.5, ACCEPT_LOG_EVERY => 1};

sub _pause_accepting ($self, $why) {
  return if $self->{accept_paused};
  $self->{accept_paused} = 1;
  my $now = Time::HiRes::time();
  my $n = ++$self->{accept_failures};
  if ($now - ($self->{accept_logged_at} // 0) >= ACCEPT_LOG_EVERY) {
    $self->log(warn => "accept failed: $why" . ($n > 1 ? " ($n times since the last such line)" : '')
      . '; serving the open connections, accepting again every ' . ACCEPT_PAUSE . ' s');
    @$self{qw(accept_logged_at accept_failures)} = ($now, 0);
  }
  my $loop = $self->_loop;
  $loop->unwatch_io(handle => $_->{fh}, on_read_ready => 1) for @{$self->{listeners}};
  weaken(my $weak = $self);
  $loop->watch_time(after => ACCEPT_PAUSE, code => sub {
    return unless $weak;
    $weak->{accept_paused} = 0;
    $weak->_watch_listeners unless $weak->{stopping};
  });
}

# Lean accept path: accept a batch, make each socket non-blocking, hand it over
sub _accept ($self, $l) {
  my $listener = $l->{fh};
  return $self->_retire if $self->{max_requests} && $self->{served} >= $self->{max_requests};
  my $max = $self->{max_connections};
  for (1 .. ($self->{accept_batch} // ACCEPT_BATCH)) {
    my $fh;
    if (!accept($fh, $listener)) {
      last if $! == EAGAIN || $! == EWOULDBLOCK;
      next if $! == EINTR || $! == ECONNABORTED;
      return $self->_pause_accepting("$!") if $! == EMFILE || $! == ENFILE || $! == ENOBUFS || $! == ENOMEM;
      $self->log(error => "accept failed: $!");
      last;
    }
    fcntl($fh, F_SETFL, O_NONBLOCK);
    setsockopt($fh, IPPROTO_TCP, TCP_NODELAY, 1) if $l->{tcp};
    if ($self->{tls}) { $self->_tls_accept($fh, $l); next }
    my $conn = PAGI::Server::Connection->new($self, $fh);
    $self->{conns}{refaddr $conn} = $conn;
    # Over the limit: a 503 through the connection's wire-error path, then close
    $conn->_wire_error(503, 'too many connections') if $max && keys %{$self->{conns}} > $max;
  }
}

# TLS: the handshake runs in the loop; the connection exists once it is done
sub _tls_accept ($self, $fh, $l) {
  bless $fh, $l->{tcp} ? 'IO::Socket::IP' : 'IO::Socket::UNIX';
  my $max = $self->{max_connections};
  my $over = $max && keys(%{$self->{conns}}) + keys(%{$self->{handshakes}}) >= $max;
  weaken(my $weak = $self);
  PAGI::Server::TLS::handshake($self, $fh, sub ($ssl, $info) {
    return close $ssl unless $weak && !$weak->{stopping};
    my $conn = PAGI::Server::Connection->new($weak, $ssl, $info);
    $weak->{conns}{refaddr $conn} = $conn;
    return $conn->_wire_error(503, 'too many connections') if $over;
    # Bytes OpenSSL already decrypted do not make the socket readable again
    $conn->_read_pending if $ssl->pending;
  });
}

sub _forget ($self, $conn) {
  delete $self->{conns}{refaddr $conn};
  $self->_maybe_stopped if $self->{stopping};
}

sub connection_count ($self) { scalar keys %{$self->{conns}} }

sub _tick_timer ($self) {
  weaken(my $weak = $self);
  my $tick = sub {
    return unless $weak;
    $NOW = time;
    for my $c (values %{$weak->{conns}}) { $c->_tick($NOW) }
    if (%{$weak->{handshakes}}) {
      # TLS handshakes get header_timeout
      $_->{deadline} < $NOW and $_->{abort}->() for values %{$weak->{handshakes}};
    }
    $weak->_worker_tick if $weak->{worker_num};
    my $log = $weak->{access_log};
    $log->flush if $log && $log != \*STDERR && $log->can('flush');
    $weak->_flush_access_log if $weak->{access_log_file};
  };
  my $loop = $self->_loop;
  if (my $fd = _timer_fd()) {
    # A timerfd costs the loop nothing between ticks; an IO::Async timer makes every
    # turn of the loop look at the clock and the timer queue
    $self->{tick_fd} = $fd;
    $loop->watch_io(handle => $fd, on_read_ready => sub { eval { $fd->receive }; $tick->() });
    return;
  }
  my $again;
  $again = sub { $tick->(); $weak->{tick_id} = $loop->watch_time(after => 1, code => $again) if $weak };
  $self->{tick_id} = $loop->watch_time(after => 1, code => $again);
}

# A non-blocking timerfd firing every second (Linux::FD, when installed), or undef
sub _timer_fd {
  return undef unless eval { require Linux::FD::Timer; 1 };
  my $fd = eval {
    my $t = Linux::FD::Timer->new('monotonic');
    $t->blocking(0);
    $t->set_timeout(1, 1);
    $t;
  };
  return $fd;
}

sub _stop_tick ($self) {
  my $loop = $self->_loop;
  if (my $fd = delete $self->{tick_fd}) { $loop->unwatch_io(handle => $fd, on_read_ready => 1) }
  $loop->unwatch_time(delete $self->{tick_id}) if $self->{tick_id};
}

# ---- stopping ------------------------------------------------------------------

# Graceful stop: no new connections, busy ones finish (bounded), lifespan shutdown.
# soft => 1 (a worker retiring while others serve on): idle keep-alive connections
# are not cut; each is closed after its next response or when its idle time runs out,
# so a client that has just sent a request on one is answered, not reset.
sub shutdown ($self, %opt) {
  if ($self->{stopped}) {
    # Asked again: a soft stop becomes a normal one; a normal one closes everything now
    return $self->{stopped} if $opt{soft} || $self->{stopped}->is_ready;
    my $force = !$self->{soft};
    $self->{soft} = 0;
    $self->log(info => 'closing ' . $self->connection_count . ' connection(s) now')
      if $force && $self->connection_count;
    $_->_shutdown($force) for values %{$self->{conns}};
    return $self->{stopped};
  }
  # Not serving (never listened, or removed from its loop): nothing to stop
  return Future->done($self) unless $self->{listeners} && $self->{in_loop};
  my $loop = $self->_loop;
  $self->{running}  = 0;
  $self->{stopping} = 1;
  $self->{soft}     = $opt{soft} ? 1 : 0;
  $self->{stopped}  = $loop->new_future;
  for my $l (@{$self->{listeners} || []}) {
    $loop->unwatch_io(handle => $l->{fh}, on_read_ready => 1);
    # A worker closes only its copy: the master keeps the socket for the others
    close $l->{fh};
  }
  $self->{listeners} = [];
  $_->{abort}->() for values %{$self->{handshakes}};
  $self->log(info => 'shutting down: waiting for ' . $self->connection_count . ' connection(s)')
    if $self->connection_count;
  for my $c (values %{$self->{conns}}) {
    if ($opt{soft}) { $c->_soft_stop }
    else { $c->_shutdown }
  }
  weaken(my $weak = $self);
  $self->{grace_id} = $loop->watch_time(after => $self->{shutdown_timeout}, code => sub {
    return unless $weak;
    my $n = $weak->connection_count or return;
    $weak->log(warn => "shutdown timeout: closing $n connection(s)");
    $_->_shutdown(1) for values %{$weak->{conns}};
  });
  $self->_maybe_stopped;
  return $self->{stopped};
}

sub _maybe_stopped ($self) {
  return if $self->connection_count || %{$self->{handshakes}} || $self->{lifespan_stopping}++;
  my $loop = $self->_loop;
  $loop->unwatch_time($self->{grace_id}) if $self->{grace_id};
  $self->_stop_tick;
  # Held: a wait_any nobody references is destroyed, and its callback never runs
  $self->{lifespan_stop} = $self->_lifespan_shutdown->on_ready(sub {
    $self->{stopped}->done($self) unless $self->{stopped}->is_ready;
  });
}

# Removed from its loop while serving: everything that runs on the loop stops now
sub _stop_now ($self) {
  my $loop = $self->{loop};
  $self->{running} = 0;
  $self->{stopping} ||= 1;
  $self->_close_listeners;
  $_->{abort}->() for values %{$self->{handshakes}};
  $_->_shutdown(1) for values %{$self->{conns}};
  $loop->unwatch_time(delete $self->{grace_id}) if $self->{grace_id};
  $self->_stop_tick;
  $self->{stopped}->done($self) if $self->{stopped} && !$self->{stopped}->is_ready;
}

# Unix socket files this process created
sub _unlink_sockets ($self) {
  for (@{$self->{unlink} || []}) { unlink $_->[0] if $_->[1] == $$ }
}

# Blocks: serve until SIGINT/SIGTERM, then stop gracefully. Returns the exit status.
# With workers, this process becomes the master of a pre-forked pool instead.
sub run ($self) {
  if (!$self->{workers} && $self->{max_requests}) {
    # Recycling needs a process to replace the one that retires: one worker, under a
    # master that starts its successor
    $self->log(info => "max_requests without workers: serving from one worker process, "
      . "replaced after every $self->{max_requests} request(s)");
    $self->{workers} = 1;
  }
  $self->_raise_nofile;
  if ($self->{workers}) {
    require PAGI::Server::Prefork;
    my $status = PAGI::Server::Prefork->new($self)->run;
    $self->_remove_pid_file;
    return $status;
  }
  my $loop = $self->_loop;
  local $SIG{PIPE} = 'IGNORE';
  # A stop signal during startup is kept and acted on once serving (USR2 then has
  # nothing to upgrade: it is ignored rather than stopping the process)
  my $early;
  local @SIG{qw(INT TERM)} = map { my $s = $_; sub { $early //= $s } } qw(INT TERM);
  local $SIG{USR2} = 'IGNORE';
  my $f = $self->listen;
  my $ok = eval { $f->get; 1 };
  if (!$ok) {
    my $err = $@ =~ s/\s+\z//r;
    $self->log(error => $err);
    $self->_unlink_sockets;
    $self->_remove_pid_file;
    return 1;
  }
  # (listen handles INT and TERM from here on)
  my $stop = sub ($sig) {
    $self->log(info => "SIG$sig received");
    $self->shutdown->on_done(sub { $loop->stop });
  };
  $self->_on_signals(['USR1'], sub ($sig) { $self->_reopen_access_log });
  $self->_on_signals(['USR2'], sub ($sig) { $self->_upgrade });
  $self->_signalled($stop, $early) if $early;    # (acted on inside run, so that stop works)
  $loop->run;
  # (after an upgrade the socket files are the new server's)
  $self->_unlink_sockets unless $self->{handed_over};
  $self->_remove_pid_file;
  $self->log(info => "stopped after $self->{served} request(s)");
  return 0;
}

# ---- the USR2 upgrade -------------------------------------------------------------

# SIGUSR2 to a single process: the same command line is started again (new Perl code,
# modules and server code are loaded) with the listening sockets inherited; once it
# serves, this process retires as a worker does after max_requests (no new
# connections; in-flight requests finish; each open connection gets one more
# response, with Connection: close). A new process that fails to start leaves this
# one serving. (With workers the master does the same: PAGI::Server::Prefork.)
sub _upgrade ($self) {
  return $self->log(warn => "SIGUSR2 ignored: an upgrade is already under way (new process pid $self->{successor}{pid})")
    if $self->{successor};
  return $self->log(warn => 'SIGUSR2 ignored: the server is stopping') if $self->{stopping};
  my ($pid, $r) = eval { PAGI::Server::Handoff::spawn_successor(map { $_->{fh} } @{$self->{listeners}}) };
  return $self->log(error => 'SIGUSR2: cannot start a new server process: ' . ($@ =~ s/\s+\z//r)) unless $pid;
  $self->log(info => "SIGUSR2 received: started a new server process (pid $pid) on the same sockets; "
    . 'this one serves until it is ready');
  my $succ = $self->{successor} = {pid => $pid, r => $r, buf => ''};
  $r->blocking(0);
  my $loop = $self->_loop;
  $loop->watch_io(handle => $r, on_read_ready => sub {
    my $n = sysread($r, $succ->{buf}, 64, length $succ->{buf});
    return if !defined $n && ($!{EAGAIN} || $!{EINTR});
    if ($succ->{buf} =~ /\Aready\n/) {
      $loop->unwatch_io(handle => $r, on_read_ready => 1);
      close $r;
      $self->{handed_over} = 1;
      $self->log(info => "the new server process (pid $pid) serves: this one (pid $$) retires");
      return $self->shutdown(soft => 1)->on_done(sub { $loop->stop });
    }
    return if $n;
    # Closed without "ready": it failed (its own log lines say why)
    $loop->unwatch_io(handle => $r, on_read_ready => 1);
    close $r;
    delete $self->{successor};
    $self->_reap_successor($pid, 50);
  });
}

# Waits (without blocking the loop) for a failed new process to exit, and says how
sub _reap_successor ($self, $pid, $tries) {
  my $got = waitpid($pid, POSIX::WNOHANG());
  if ($got == $pid || $got < 0 || !$tries) {
    my $how = $got != $pid ? 'stopped' : $? & 127 ? 'was killed by signal ' . ($? & 127) : 'exited with status ' . ($? >> 8);
    return $self->log(error => "upgrade failed: the new server process (pid $pid) $how before it served; "
      . "this one (pid $$) serves on");
  }
  weaken(my $weak = $self);
  $self->_loop->watch_time(after => 0.1, code => sub { $weak->_reap_successor($pid, $tries - 1) if $weak });
}

# This process serves (a single process listens; a master's first workers are ready):
# systemd is told (Type=notify), and in an upgrade the pid file is written and the
# previous server told to retire
sub _serving ($self) {
  if (my $up = delete $self->{upgrade}) {
    $self->_write_pid_file if defined $self->{pid_file};
    my $err = PAGI::Server::Handoff::notify("MAINPID=$$\nREADY=1\n");
    $self->log(warn => "sd_notify: $err") if $err;
    $self->log(info => "upgrade: serving; the previous server (pid $up->{old_pid}) retires");
    syswrite($up->{ready}, "ready\n");
    close $up->{ready};
    return;
  }
  my $err = PAGI::Server::Handoff::notify("READY=1\nMAINPID=$$\n");
  $self->log(warn => "sd_notify: $err") if $err;
}

# Runs $code->($signame) from the loop when one of the signals arrives, never inside
# whatever Perl code the signal interrupted. A plain %SIG handler queues the work and
# writes a byte to a pipe that the loop watches (_signalled): nothing is checked on a
# turn of the loop without a signal, unlike IO::Async's watch_signal, and it works on
# every loop, whether or not it runs IO::Async's `later` queue (IO::Async::Loop::Mojo
# does not). A loop whose wait runs in C never returns to Perl when a signal
# interrupts it, so a %SIG handler would only run at the next event: there (EV, which
# Mojo::IOLoop runs on when it is installed) the loop's own signal watchers catch the
# signal instead, and queue the work the same way.
sub _on_signals ($self, $signals, $code) {
  my $ev = _loop_waits_in_ev($self->_loop);
  for my $sig (@$signals) {
    if ($ev) { $self->{ev_signals}{$sig} = EV::signal($sig, sub { $self->_signalled($code, $sig) }) }
    else {
      $self->{saved_sig}{$sig} //= [$SIG{$sig}];
      $SIG{$sig} = sub { $self->_signalled($code, $sig) };
    }
  }
}

# Removed from the loop: the signal handlers it installed are undone
sub _forget_signals ($self) {
  delete $self->{ev_signals};
  my $saved = delete $self->{saved_sig} || {};
  $SIG{$_} = $saved->{$_}[0] // 'DEFAULT' for keys %$saved;
  if (my $w = delete $self->{signal_wake}) {
    $self->{loop}->unwatch_io(handle => delete $self->{signal_read}, on_read_ready => 1) if $self->{loop};
    close $w;
  }
  $self->{signals_queued} = [];
}

# Does this loop wait inside EV (libev's C loop)?
sub _loop_waits_in_ev ($loop) {
  return 0 unless $INC{'EV.pm'};
  return 1 if $loop->isa('IO::Async::Loop::EV');
  return $loop->isa('IO::Async::Loop::Mojo') && Mojo::IOLoop->singleton->reactor->isa('Mojo::Reactor::EV');
}

# Queues $code->($sig) to run from the loop (see _on_signals): safe in a signal handler
sub _signalled ($self, $code, $sig) {
  push @{$self->{signals_queued}}, [$code, $sig];
  my $wake = $self->{signal_wake} //= do {
    pipe(my $r, my $w) or die "PAGI::Server: pipe: $!\n";
    $_->blocking(0) for $r, $w;
    $self->{signal_read} = $r;
    $self->_loop->watch_io(handle => $r, on_read_ready => sub {
      1 while sysread($r, my $buf, 512);
      while (my $q = shift @{$self->{signals_queued}}) { $q->[0]->($q->[1]) }
    });
    $w;
  };
  syswrite($wake, '!');
}

# ---- one worker of a pre-forked server (see PAGI::Server::Prefork) ---------------

# Runs in the forked child: its own loop and TLS context, lifespan with is_worker and
# worker_num, then accept on the shared sockets. $notify->(WORD) tells the master.
# Returns the exit status (STARTUP_FAILED when lifespan startup failed).
sub _run_worker ($self, $num, $notify, $early) {
  $self->{worker_num} = $num;
  # Workers share the listening socket: taking a few connections per wake-up (not 64)
  # spreads a burst of new connections over all of them
  $self->{accept_batch} = WORKER_ACCEPT_BATCH;
  $self->{log_prefix} = "[worker $num pid $$] ";
  $self->{notify}     = $notify;
  $self->{master_pid} = getppid;
  undef $IO::Async::Loop::ONE_TRUE_LOOP;
  # A loop library the master loaded must not share its kernel state with the workers:
  # EV makes its default loop (an epoll set, a signal eventfd) when it loads
  EV::default_loop()->loop_fork if $INC{'EV.pm'};
  my $loop = _make_loop($self->{loop_type});
  $loop->add($self);
  $self->{ssl_ctx} = PAGI::Server::TLS::context($self) if $self->{tls};
  $NOW = time;
  if ($self->{access_log} && $self->{access_log} != \*STDERR) {
    # Workers share the access log file: a buffered handle would flush pieces of
    # lines into each other's, so lines are collected and written whole each second
    $self->{access_log_file} = $self->{access_log};
    $self->_access_buffer;
  }
  if (!$self->{app}) {
    # app_file (no preload): this worker loads the application itself
    $self->{app} = eval { PAGI::Server->load_app($self->{app_file}) } or do {
      $self->log(error => $@ =~ s/\s+\z//r);
      return PAGI::Server::Prefork::STARTUP_FAILED();
    };
    delete $self->{app_given};
    $self->_wrap_app;
  }
  my $ok = eval { $self->_lifespan_startup->get; 1 };
  if (!$ok) {
    $self->log(error => 'lifespan startup failed: ' . ($@ =~ s/\s+\z//r));
    return PAGI::Server::Prefork::STARTUP_FAILED();
  }
  my $stop = sub ($soft) { $self->shutdown(soft => $soft)->on_done(sub { $loop->stop }) };
  $self->_on_signals([qw(INT TERM)], sub ($sig) { $self->log(debug => "SIG$sig received"); $stop->(0) });
  # The master's "retire": finish in-flight work while the other workers serve on
  $self->_on_signals(['USR2'], sub ($sig) { $self->log(debug => 'retiring'); $stop->(1) });
  $self->_on_signals(['USR1'], sub ($sig) { $self->_reopen_access_log });
  $self->_own_listeners if $self->{reuseport};
  $self->_start_accepting;
  $self->{running} = 1;
  $notify->('ready');
  if (my $sig = $early->()) { $self->_signalled(sub ($s) { $stop->($s eq 'USR2' ? 1 : 0) }, $sig) }
  $loop->run;
  $self->_flush_access_log if $self->{access_log_file};
  $self->log(debug => "stopped after $self->{served} request(s)");
  return 0;
}

# SIGUSR1: the access log file is opened again by its name, so that after a rotation
# (logrotate moved it away) new lines go to a new file. Lines already collected go to
# the old one first.
sub _reopen_access_log ($self) {
  my $path = $self->{access_log_path} or return;
  open(my $fh, '>>', $path)
    or return $self->log(error => "access log: cannot reopen $path: $!; still writing to the old file");
  if ($self->{access_log_file}) {    # a worker: whole lines are written each second
    $self->_flush_access_log;
    $self->{access_log_file} = $fh;
  }
  else {
    $self->{access_log}->flush;
    $self->{access_log} = $fh;
  }
  $self->log(info => "access log reopened: $path");
}

sub _access_buffer ($self) {
  my $buf = '';
  open(my $mem, '>', \$buf) or die "in-memory handle: $!";
  @$self{qw(access_log access_buf)} = ($mem, \$buf);
}

# Appends the collected access log lines to the file in one write
sub _flush_access_log ($self) {
  my $buf = $self->{access_buf};
  $self->{access_log}->flush;
  return unless length $$buf;
  my $data = $$buf;
  $self->_access_buffer;
  my $off = 0;
  while ($off < length $data) {
    my $n = syswrite($self->{access_log_file}, $data, length($data) - $off, $off);
    if (!defined $n) { next if $!{EINTR}; $self->log(error => "access log: $!"); last }
    $off += $n;
  }
}

# Once a second in a worker: stop when the master is gone, retire after max_requests
sub _worker_tick ($self) {
  return if $self->{stopping};
  if (getppid != $self->{master_pid}) {
    $self->log(warn => 'the master process is gone: stopping');
    return $self->shutdown->on_done(sub { $self->_loop->stop });
  }
  $self->_retire if $self->{max_requests} && $self->{served} >= $self->{max_requests};
  # heartbeat_timeout: the master kills a worker whose loop stops turning
  if (my $hb = $self->{heartbeat_timeout}) {
    if ($NOW - ($self->{beat_at} // 0) >= $hb / 5) {
      $self->{beat_at} = $NOW;
      $self->{notify}->('beat');
    }
  }
}

# max_requests reached: stop accepting, tell the master (which starts the replacement
# at once), finish in-flight requests, exit
sub _retire ($self) {
  return if $self->{stopping};
  $self->log(info => "served $self->{served} request(s) (max_requests): retiring");
  $self->{notify}->('retire') if $self->{notify};
  $self->shutdown(soft => 1)->on_done(sub { $self->_loop->stop });
}

# Text that looks like UTF-8 bytes given as characters: no character above 0xFF,
# some above 0x7F, and the whole reads as valid UTF-8 (development warns about it)
sub looks_encoded ($text) {
  return 0 if $text !~ /[\x80-\xff]/ || $text =~ /[^\x00-\xff]/;
  my $copy = $text;
  utf8::downgrade($copy, 1) or return 0;
  return utf8::decode($copy) ? 1 : 0;
}

# Loads an application file as plackup and upstream's runner do: by its absolute
# path, with $0 and @ARGV naming it while it loads, and FindBin (when loaded)
# refreshed, so that `use FindBin; use lib "$FindBin::Bin/lib"` finds the app's own
# directory
sub load_app ($class, $file) {
  require File::Spec;
  my $path = File::Spec->rel2abs($file);
  die "PAGI::Server: cannot read '$file': " . (-e $path ? 'permission denied' : 'no such file') . "\n"
    unless -f $path && -r _;
  # (setting $0 also sets the process title; local restores the name, not the
  # arguments that ps showed: the whole title is put back afterwards)
  my $title = $0 =~ /\s/ ? $0 : join ' ', $0, @ARGV;
  my $app = do {
    local $0 = $path;
    local @ARGV = ($path);
    FindBin::again() if $INC{'FindBin.pm'};
    do $path;
  };
  $0 = $title;
  die "PAGI::Server: cannot load '$file': $@" if $@;
  die "PAGI::Server: cannot read '$file': $!\n" if !defined $app && $!;
  die "PAGI::Server: '$file' did not return a code reference (its last statement must be the app)\n"
    unless ref $app eq 'CODE';
  return $app;
}

1;

=head1 NAME

PAGI::Server - a fast, correct PAGI server on IO::Async, with a Rust hot path

=head1 SYNOPSIS

  use PAGI::Server;
  use Future::AsyncAwait;

  my $app = async sub ($scope, $receive, $send) {
    die "unsupported scope $scope->{type}" unless $scope->{type} eq 'http';
    await $send->({type => 'http.response.start', status => 200,
      headers => [['content-type', 'text/plain']]});
    await $send->({type => 'http.response.body', body => "Hello\n"});
  };

  my $server = PAGI::Server->new(app => $app, host => '127.0.0.1', port => 5000);
  exit $server->run;

  # Or inside your own IO::Async loop (PAGI::Server is an IO::Async::Notifier)
  my $loop = IO::Async::Loop->new;
  my $server = PAGI::Server->new(app => $app, port => 0);
  $loop->add($server);
  $server->listen->get;          # bind, lifespan startup, accept
  printf "listening on port %d\n", $server->port;
  $loop->run;                    # SIGINT/SIGTERM: graceful shutdown, then the loop stops

=head1 DESCRIPTION

PAGI::Server serves a PAGI application (PAGI specification 0.3: C<http> scopes with
streamed request and response bodies, files and trailers; C<websocket> scopes over
RFC 6455; C<sse> scopes for Server-Sent Events; and C<lifespan>) over HTTP/1.1, with
keep-alive, pipelining, HTTP/1.0, chunked bodies both ways and
C<Expect: 100-continue>. It runs on an L<IO::Async> loop (L<IO::Async::Loop::Epoll>
when installed). Malformed requests get a 4xx and a close; limits and timeouts are
options; application errors become 500 responses and a log line.

It takes upstream PAGI::Server's options (names and shapes) as well as its own, and
is used the same way (an L<IO::Async::Notifier>; C<listen>, C<shutdown>, ...); the
README's "Coming from PAGI::Server" lists every difference.

=head1 ATTRIBUTES

Given to C<new> or C<configure>; unknown options are an error (naming the nearest
known one). Upstream's names are accepted too: C<timeout> (our
C<keepalive_timeout>), C<max_header_count> (C<max_headers>), C<lifespan> (and
C<lifespan_mode>), C<ssl> and C<disable_tls> (below). Upstream options whose
mechanism this server does not have are refused by name, saying why: C<http2>, the
C<h2_*> options, C<sync_file_threshold>, C<extensions>.

=over

=item app

The PAGI application, a code reference returning a L<Future>. Required, unless
C<app_file> is given.

=item app_loader

Instead of C<app>: a code reference that returns the application, called once the
listening sockets are bound and privileges dropped (C<user>, C<group>), so that the
application is never loaded as root; with C<workers>, in the master before the
workers are forked. The CLI uses it with C<--user>/C<--group>.

=item app_file

Instead of C<app>: a file whose last statement is the application (as
L</load_app> reads it). Without C<workers> it is loaded at once (with C<user> or
C<group>, once they are taken on); with C<workers>
each worker loads it after the fork and the master never does, so a HUP (new
workers) runs the code as it is on disk then, modules it uses included (the CLI's
C<--no-preload>). A worker that cannot load it exits as one whose lifespan startup
failed: in the first generation that stops the server; after a HUP the old workers
keep serving.

=item psgi, psgi_app

C<psgi =E<gt> 1>: C<app> (or C<app_file>) is a PSGI application, served through
L<PAGI::Server::PSGI>; C<psgi_app =E<gt> $app> is short for C<app =E<gt> $app, psgi
=E<gt> 1>. WebSocket upgrades and event-stream requests then reach it as plain HTTP
requests. The CLI sets it for a C<.psgi> file or C<--psgi FILE>;
L<Plack::Handler::PAGI::Server> (C<plackup -s PAGI::Server>) uses C<psgi_app>.

=item host, port

Where to listen. Default C<127.0.0.1> and C<5000>; port C<0> picks a free port
(see C<port>).

=item loop, loop_type

An L<IO::Async::Loop> to use, or the name of a loop class (C<Epoll>, C<Poll>,
C<Select>, C<Mojo>, C<Glib> or a full class name). Default: Epoll when installed.
Every signal the server handles works on each of them (see L</SIGNALS>).

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

=item log_level, quiet

C<error>, C<warn>, C<info> (default) or C<debug>. C<quiet>: errors only.

=item env, validate_events

The mode: C<development> (default: C<PAGI_ENV>, else development), C<production>,
or another word. In development a send after the response completed
(C<http.response.body>, C<.trailers>, C<.start>) fails, and WebSocket C<text> or SSE
C<data> that looks like UTF-8 bytes (only code points below 256 forming valid
multi-byte UTF-8) gets one warning per connection; otherwise such a send is ignored
with a C<debug> line, as upstream does in production. C<validate_events> (upstream's
name) overrides the first: 1 strict, 0 lenient. Whatever the PAGI specification
makes an error is one in every mode.

=item request_timeout

Seconds without progress while reading a request body or writing a response before
the connection is closed (408 when nothing was answered yet); 0: none. Default 60.
(This was C<timeout> before; C<timeout> is now upstream's: C<keepalive_timeout>.)

=item header_timeout

Seconds from the first byte of a request head to its end (slow clients get 408).
Default 30.

=item keepalive_timeout, timeout

Seconds an idle connection is kept open, before the first request and between
requests; 0: no limit. Default 5.

=item shutdown_timeout

Seconds in-flight requests get to finish after SIGINT/SIGTERM (and that lifespan
shutdown may take). Default 30.

=item ws_idle_timeout, sse_idle_timeout

Seconds a WebSocket may go without a frame either way (it then gets a Close 1001,
and the app C<websocket.disconnect> 1006 C<idle_timeout>), or an event stream
without anything sent, keepalive comments included (it ends; the app gets
C<sse.disconnect> C<idle_timeout>). Default 0: none.

=item lifespan_mode (lifespan)

C<auto> (default: lifespan if the app supports it), C<on> (an app that does not
support it stops startup) or C<off> (the app never sees a lifespan scope).

=item lifespan_startup_timeout

Seconds lifespan startup may take before the server gives up starting; 0: no limit.
Default 30.

=item max_header_size, max_headers, max_line

Largest request head in bytes (431 beyond), most header fields (431), longest
request line (414). Defaults 16384, 100, 8192.

=item max_body_size

Largest request body in bytes (413 beyond); 0 means no limit. Default 10 MiB.

=item max_ws_message_size, max_ws_frame_size

Largest WebSocket message, and frame, in bytes; a bigger one closes the connection
with 1009 (the app sees 1006). Defaults 16 MiB and (0) the message limit.

=item max_receive_queue

WebSocket messages received and not yet taken by the app: at this many the server
stops reading, so that TCP pushes back on the client. Default 64.

=item write_high_watermark, write_low_watermark

Bytes queued for a socket at which a C<$send> waits, and below which it is released
(also C<pagi.transport>'s marks). Defaults 256 KiB and 64 KiB.

=item ws_close_timeout

Seconds a WebSocket peer has to answer the server's Close frame. Default 5.

=item scope_loop

Set C<< $scope->{pagi}{loop} >> to the server's IO::Async loop in every scope, for
applications written for PAGI 0.1 (PAGI::Simple's worker pool, C<stream_to_file>),
which read it (the lifespan scope included). Off by default: the key costs about
0.5% more instructions on the smallest request (the application is then called
through a wrapper that adds it, so that a server without it pays nothing), and a
scope that holds the loop can no longer be serialised as data.

=item root_path

The scope's C<root_path> (the mount point of the app). Default empty.

=item listen, socket, socket_mode

More places to listen. C<listen> is a list (or one string) of C<HOST:PORT>,
C<[IPv6]:PORT>, C<PORT>, C<unix:PATH>, a path (starting with C</> or C<.>) or a bare
name (a Unix socket), or upstream's hashes C<{host =E<gt> H, port =E<gt> P}> and
C<{socket =E<gt> PATH, socket_mode =E<gt> 0660}>; C<socket> is a Unix domain socket
path. C<socket_mode> (a number or an octal string) is the Unix sockets' file mode:
each is created owner-only, then given that mode.
C<host>/C<port> are listened on as well when given, or when neither of these is. On a
Unix socket the scope has C<server =E<gt> [PATH, undef]> and C<client =E<gt> undef>. A
socket file left behind by a dead server is replaced (a live one is an error); the
file is removed at exit.

=item workers

Pre-fork this many worker processes (default 0: a single process). The master binds
every listening socket once, before forking, and the workers share them (the kernel
gives each new connection to one of the workers that accept). Each worker creates its
own L<IO::Async> loop (C<loop_type>; a C<loop> object cannot be shared and is refused)
and TLS context after the fork, and runs lifespan with C<is_worker =E<gt> 1> and
C<worker_num> 1..N; the master never runs the application. With C<workers> 0 lifespan
gets C<is_worker =E<gt> 0> and C<worker_num =E<gt> undef>. A worker that dies is started
again, with a delay that grows (0.1 s doubling to 5 s) while workers keep dying young.
See L<PAGI::Server::Prefork> for the master and its signals.

=item max_requests

A worker that has served this many requests stops accepting, tells the master (which
starts its replacement at once), finishes its in-flight requests, answers one more
request on each open keep-alive connection with C<Connection: close>, and exits.
Without C<workers>, C<run> serves from one worker under a master for it (C<listen>
in your own loop refuses it). Default 0 (never).

=item listener_backlog, reuseport

The listen queue length (default 2048). C<reuseport>: SO_REUSEPORT; with C<workers>
each worker listens on a socket of its own, and the kernel spreads new connections
over them (the master keeps the address bound, not listening).

=item heartbeat_timeout

With C<workers>: a worker whose event loop has not turned for this many seconds (a
blocking call, an endless computation) is killed (SIGKILL) and replaced, and the log
says so. Default 50; 0: off; otherwise at least 2 (workers report once a second). A
single process has no master to do this (under systemd, use C<WatchdogSec=> with a
supervisor of your own, or run with C<workers>). Independently, a retiring worker
(HUP, TTOU, C<max_requests>, an upgrade) that is still there C<shutdown_timeout> + 30
seconds after it was told is killed.

=item user, group

Once the sockets are bound (so that a port below 1024 works) and the pid file is
written, the process (with C<workers>, the master and so every worker) runs as this
user and group: real, effective and saved ids, and the user's own supplementary
groups instead of root's. Needs root, except in a process that already runs as
them (the new server of a USR2 upgrade). The application is loaded after the switch
when it is given as C<app_file> or C<app_loader> (the CLI does so).

=item pid_file

A file to write the process id to (the master's, with C<workers>): written once the
sockets are bound, before C<user>/C<group> are taken on (and then given to that
user); after a USR2 upgrade the new server writes its own there, once it serves.
Removed at exit while it still names this process (and its directory lets the
user remove it).

=item max_connections

The most connections a process (each worker) holds; a connection beyond it is
answered C<503 Service Unavailable> (text/plain, C<Connection: close>) and closed,
while the open ones carry on. Default 0 (no limit).

=item ssl_cert, ssl_key, ssl_ca, ssl_verify_client, ssl_min_version, ssl_cipher_list, ssl, disable_tls

Serve TLS on every listener: the certificate (PEM, intermediates after the leaf) and
its key. Scopes then have C<scheme> C<https> (WebSocket: C<wss>) and the C<tls>
extension (C<server_cert>, C<client_cert_chain>, C<client_cert_name>,
C<client_cert_error>, C<tls_version>, C<cipher_suite>), which plain connections never
have. C<ssl_verify_client> is C<none> (default), C<optional> (ask for a client
certificate, verify it against C<ssl_ca>, report a failure in C<client_cert_error>)
or C<require> (refuse the handshake without a valid one). The handshake runs inside
the loop without blocking and is bounded by C<header_timeout>.
C<ssl_min_version> (C<TLSv1_2>, C<TLSv1_3>, ...) is the oldest version negotiated;
C<ssl_cipher_list> an OpenSSL cipher list. Upstream's C<ssl =E<gt> {cert_file,
key_file, ca_file, verify_client, min_version, cipher_list}> sets these (a true
C<verify_client> is C<require>); C<disable_tls =E<gt> 1> ignores C<ssl>. See
L<PAGI::Server::TLS>.

=item on_listen

A code reference called once with the server, right after the listening socket is
bound (so after lifespan startup) and before the first connection is accepted; C<<
$server->port >> then gives the bound port. Useful with C<port =E<gt> 0>, e.g. to tell a
parent process where to connect.

=back

=head1 METHODS

=head2 run

Raises the soft limit of open files to the hard limit (with L<BSD::Resource>; said
at C<debug> level, as is its absence), starts (lifespan startup, listen), serves
until SIGINT or SIGTERM, then stops
gracefully: no new connections, idle ones are closed, in-flight requests get
C<shutdown_timeout> seconds, then lifespan shutdown runs; a second signal closes the
remaining connections at once. Returns the exit status (0, or 1 when startup
failed). With C<workers>, the process becomes the master of the pool and returns
when every worker has stopped.

=head1 SIGNALS

  signal      single process                 with workers (sent to the master)
  TERM, INT   graceful stop, exit 0          graceful stop of every worker, exit 0
  HUP         -                              graceful restart: new workers, then
                                             the old ones retire
  TTIN, TTOU  -                              one worker more / fewer (at least 1)
  USR1        reopen the access log file     reopen it in every worker
  USR2        upgrade (below)                upgrade (below)

USR2 (in C<run>) upgrades the server in place, as nginx and unicorn do: the process
starts its own command line again (perl with its switches, the script and its
arguments, from the directory it was started in), so new Perl, modules, server and
application code are loaded, and hands it the listening sockets (file descriptors 3,
4, ... with C<LISTEN_FDS>/C<LISTEN_PID>, as systemd passes them, plus
C<PAGI_SERVER_UPGRADE>: a pipe to say it is ready on). The new server (with
C<workers>, a new master and its workers) does not bind: it serves those sockets.
Once it serves (its first workers ready), it writes the C<pid_file>, tells systemd
its C<MAINPID> (C<NOTIFY_SOCKET>), and the old one retires as a worker does after
HUP: no new connections, in-flight requests finish, each open connection gets one
more response with C<Connection: close>, and it exits 0. A new server that fails
(code that does not compile, a lifespan startup that fails) exits, the old one logs
C<upgrade failed> with its exit status, and serves on. A USR2 during an upgrade is
ignored (logged). The new process is a child of the old one until it retires.

A second TERM or INT closes the remaining connections at once. The signals are
handled from the loop (a plain C<%SIG> handler wakes it through a pipe), and on loops
whose wait runs in C (EV, under C<Mojo> when EV is installed) through the loop's own
signal watchers, so they work on every loop. Workers that have not
exited C<shutdown_timeout> + 30 s after a stop are killed. HUP forks the new workers
from the master, so they run the application the master loaded: it renews the
processes (memory, connections, lifespan state), not the code, unless the server
was given C<app_file> (the CLI's C<--no-preload>): then each new worker loads the
application anew.

=head2 listen

For use inside your own loop (after C<< $loop->add($server) >>; without that, the
server adds itself to IO::Async's loop): binds, runs lifespan startup, accepts. A
L<Future> of the server; it fails when the address cannot be bound or startup
fails. From then on SIGINT and SIGTERM stop the server gracefully and then stop the
loop. Refused (a failed Future) with C<workers> or C<max_requests>: those need
C<run>.

=head2 shutdown

The graceful stop, as a L<Future> of the server: no new connections, in-flight
requests get C<shutdown_timeout>, then lifespan shutdown. C<< $loop->remove($server) >>
afterwards; removing a server that still serves closes everything at once (without
lifespan shutdown).

=head2 port

The port actually bound (the first TCP listener's), or the C<port> option before.

=head2 socket_path, listeners, is_running, connection_count, effective_max_connections

The first Unix socket's path (or undef); every listener as C<{type =E<gt> 'tcp',
host, port}> or C<{type =E<gt> 'unix', path, socket_mode}>; whether it is serving;
the open connections; C<max_connections> (0: no limit).

=head2 configure

Changes options (as C<new> takes them); those that decide the sockets (C<host>,
C<port>, C<listen>, C<socket>, TLS, C<workers>, ...) cannot change once listening.

=head2 has_tls, has_http2

Whether TLS support (IO::Socket::SSL) is installed, as upstream's; HTTP/2: 0.

=head2 load_app

C<< PAGI::Server->load_app($file) >>: the application a file returns, loaded as
plackup does (by its absolute path, C<$0> naming it, C<FindBin> refreshed).

=head2 backend

C<XS> or C<PP>: which codec implementation is active.

=head1 IMPLEMENTATIONS

The byte-level work (request heads, chunked bodies, response heads, connection
addresses) lives in L<PAGI::Server::Protocol::HTTP1>, implemented twice: in Rust,
reached through XS (C<PAGI::Server::Protocol::HTTP1::XS>), and in pure Perl
(C<PAGI::Server::Protocol::HTTP1::PP>). Both give identical results; a test checks
that they do. The XS backend is used when it was built (C<perl Makefile.PL && make>);
C<PAGI_SERVER_BACKEND=pp> forces pure Perl, C<PAGI_SERVER_BACKEND=xs> demands XS.
C<< PAGI::Server->backend >>, C<pagi-server --version> and the startup log line say
which one is active.

WebSocket frames (parsing, unmasking, building, UTF-8 checks of text messages) go
through L<PAGI::Server::Protocol::WebSocket>, which follows the same choice:
C<PAGI::Server::Protocol::WebSocket::XS> (Rust, in the same XS object) or
C<PAGI::Server::Protocol::WebSocket::PP>; C<$PAGI::Server::Protocol::WebSocket::IMPLEMENTATION>
says which. L<PAGI::Server::Protocol::Backend> makes the one choice for both.

=head1 DEBUGGING

C<log_level =E<gt> 'debug'> (C<--log-level debug>) logs which response path each
response took, and the sends ignored outside development.

=head1 SOCKET ACTIVATION

When C<LISTEN_PID> is this process and C<LISTEN_FDS> is N (L<sd_listen_fds(3)>:
systemd's C<.socket> units, C<systemd-socket-activate>), the server serves the N
sockets at file descriptors 3 .. N+2 instead of binding (TCP or Unix, told apart by
their address; they must be listening stream sockets: C<Accept=no>), with or
without C<workers>; C<host>, C<port>, C<listen> and C<socket> are then not used (the
log says so). The variables (and C<LISTEN_FDNAMES>) are removed from the environment
once read, whether or not they were for this process, so that no child takes them
for its own. Unix socket files passed by systemd are left in place at exit.
C<reuseport> is not used on them. With C<NOTIFY_SOCKET> set (C<Type=notify>), the
server sends C<READY=1> once it serves (with C<workers>: once the first workers are
ready) and C<MAINPID=> after an upgrade.

=head1 ENVIRONMENT

C<PAGI_ENV> is the default of C<env>; C<PAGI_SERVER_BACKEND> chooses the codec (see
L</IMPLEMENTATIONS>); C<IO_ASYNC_LOOP> is IO::Async's default loop; C<LISTEN_FDS>,
C<LISTEN_PID>, C<LISTEN_FDNAMES> and C<NOTIFY_SOCKET> are systemd's (see L</SOCKET
ACTIVATION>); C<PAGI_SERVER_UPGRADE> is set by a server for the one it starts on
USR2.

=head1 SEE ALSO

L<pagi-server>, L<PAGI::Server::Runner>, L<PAGI::Server::Prefork>, L<PAGI::Server::TLS>,
L<PAGI::Server::Protocol::HTTP1>, the PAGI specification.

=cut
