package PAGI::Server;
use strict;
use warnings;
use experimental 'signatures';
use Carp ();
use Errno qw(EAGAIN EWOULDBLOCK EINTR ECONNABORTED EMFILE ENFILE ENOBUFS ENOMEM);
use Fcntl qw(F_SETFL O_NONBLOCK);
use IO::Socket::IP;
use Scalar::Util qw(refaddr weaken blessed);
use Socket qw(IPPROTO_TCP TCP_NODELAY SOL_SOCKET SO_REUSEADDR);
use Time::HiRes ();
use POSIX ();
use Future;
use IO::Async::Loop;

our $VERSION = '0.001';

# Coarse clock for deadlines, refreshed by the once-a-second tick
our $NOW = time;
our $BACKEND;

use PAGI::Server::Protocol::HTTP1;
use PAGI::Server::Connection;
use PAGI::Server::Connection::Fields qw(ON_READ KEEP STARTED);

my %LEVEL = (error => 1, warn => 2, info => 3, debug => 4);

my %DEFAULT = (
  host              => '127.0.0.1',
  port              => 5000,
  timeout           => 60,
  header_timeout    => 30,
  keepalive_timeout => 5,
  shutdown_timeout  => 10,
  max_header_size   => 16384,
  max_headers       => 100,
  max_line          => 8192,
  max_body_size     => 10 * 1024 * 1024,
  max_ws_message_size => 16 * 1024 * 1024,
  ws_close_timeout  => 5,
  backlog           => 1024,
  root_path         => '',
  log_level         => 'info',
  quiet             => 0,
  workers           => 0,
  max_requests      => 0,
  max_connections   => 0,
);
my %KNOWN = map { $_ => 1 } keys %DEFAULT, qw(app app_file loop loop_type access_log backend on_listen
  listen socket ssl_cert ssl_key ssl_ca ssl_verify_client);

# How long lifespan startup/shutdown may take before we stop waiting
use constant LIFESPAN_TIMEOUT => 60;

sub new ($class, %opt) {
  my @unknown = sort grep { !$KNOWN{$_} } keys %opt;
  Carp::croak("PAGI::Server->new: unknown option(s): @unknown") if @unknown;
  if (defined $opt{app_file} && !defined $opt{app}) {
    # A file: loaded now, or with workers by each worker (so a HUP loads it anew)
    Carp::croak("PAGI::Server->new: cannot read the app_file '$opt{app_file}'") unless -r $opt{app_file};
    $opt{app} = $class->load_app($opt{app_file}) unless $opt{workers};
  }
  else {
    Carp::croak('PAGI::Server->new: app must be a code reference') unless ref $opt{app} eq 'CODE';
    Carp::croak('PAGI::Server->new: app and app_file exclude each other') if defined $opt{app_file};
  }
  Carp::croak('PAGI::Server->new: on_listen must be a code reference')
    if defined $opt{on_listen} && ref $opt{on_listen} ne 'CODE';
  if (defined $opt{backend} && $opt{backend} ne 'auto'
    && uc $opt{backend} ne $PAGI::Server::Protocol::HTTP1::IMPLEMENTATION) {
    Carp::croak("PAGI::Server->new: backend '$opt{backend}' requested but "
      . "$PAGI::Server::Protocol::HTTP1::IMPLEMENTATION is loaded; set PAGI_SERVER_BACKEND before loading PAGI::Server");
  }
  my $self = bless {%DEFAULT, %opt}, $class;
  for my $k (qw(port timeout header_timeout keepalive_timeout shutdown_timeout max_header_size
    max_headers max_line max_body_size max_ws_message_size ws_close_timeout backlog
    workers max_requests max_connections)) {
    Carp::croak("PAGI::Server->new: $k must be a non-negative number, not '" . ($self->{$k} // 'undef') . "'")
      unless defined $self->{$k} && $self->{$k} =~ /\A[0-9]+(?:\.[0-9]+)?\z/;
  }
  Carp::croak("PAGI::Server->new: log_level must be one of error, warn, info, debug")
    unless $LEVEL{$self->{log_level}};
  $self->{log_level} = 'warn' if $self->{quiet} && $LEVEL{$self->{log_level}} > $LEVEL{warn};
  $self->{level}  = $LEVEL{$self->{log_level}};
  $self->{debug}  = $self->{level} >= $LEVEL{debug} ? 1 : 0;
  $self->{access_log} = \*STDERR unless exists $opt{access_log};
  if (defined $self->{access_log} && !ref $self->{access_log}) {
    # A file name: opened here, and again on SIGUSR1 (after log rotation)
    $self->{access_log_path} = $self->{access_log};
    open(my $fh, '>>', $self->{access_log_path})
      or Carp::croak("PAGI::Server->new: cannot open the access log $self->{access_log_path}: $!");
    $self->{access_log} = $fh;
  }
  for my $k (qw(workers max_requests max_connections)) {
    Carp::croak("PAGI::Server->new: $k must be a whole number, not '$self->{$k}'")
      unless $self->{$k} =~ /\A[0-9]+\z/;
  }
  Carp::croak('PAGI::Server->new: max_requests needs workers (a worker that reaches it is replaced)')
    if $self->{max_requests} && !$self->{workers};
  Carp::croak('PAGI::Server->new: a loop object cannot be shared by worker processes; use loop_type')
    if $self->{workers} && $self->{loop};
  $self->{listen_specs} = _listen_specs($self, \%opt);
  if (defined $self->{ssl_cert} || defined $self->{ssl_key}) {
    Carp::croak('PAGI::Server->new: ssl_cert and ssl_key go together')
      unless defined $self->{ssl_cert} && defined $self->{ssl_key};
    Carp::croak("PAGI::Server->new: cannot read $_ '$self->{$_}'") for grep { !-r $self->{$_} } qw(ssl_cert ssl_key);
    Carp::croak('PAGI::Server->new: ssl_verify_client must be none, optional or require')
      unless ($self->{ssl_verify_client} //= 'none') =~ /\A(?:none|optional|require)\z/;
    require PAGI::Server::TLS;
    $self->{tls} = 1;
  }
  $self->{scheme} = $self->{tls} ? 'https' : 'http';
  # The parser's limits, in its argument order (one lookup per request instead of three)
  $self->{parse_limits} = [@$self{qw(max_header_size max_headers max_line)}];
  $self->{state}  = {};
  $self->{conns}  = {};
  $self->{handshakes} = {};
  $self->{served} = 0;
  return $self;
}

# Where to listen: listen => [spec, ...] ('HOST:PORT', '[V6]:PORT', 'PORT', 'unix:PATH'),
# socket => PATH, and host/port (used when given, or when nothing else is)
sub _listen_specs ($self, $opt) {
  my @specs;
  my @listen = ref $self->{listen} eq 'ARRAY' ? @{$self->{listen}} : grep { defined } $self->{listen};
  for my $l (@listen) {
    if ($l =~ m{\Aunix:(.+)\z} || $l =~ m{\A(/.*)\z}) { push @specs, {path => $1}; next }
    my ($h, $p) = $l =~ /\A\[([^\]]+)\]:([0-9]+)\z/ ? ($1, $2)
      : $l =~ /\A([^:]*):([0-9]+)\z/ ? ($1, $2)
      : $l =~ /\A([0-9]+)\z/ ? ($self->{host}, $1)
      : Carp::croak("PAGI::Server->new: cannot parse listen address '$l' (HOST:PORT, [IPv6]:PORT, PORT or unix:PATH)");
    push @specs, {host => length $h ? $h : $self->{host}, port => $p};
  }
  push @specs, {path => $self->{socket}} if defined $self->{socket};
  unshift @specs, {host => $self->{host}, port => $self->{port}}
    if !@specs || exists $opt->{host} || exists $opt->{port};
  return \@specs;
}

sub backend ($class_or_self) { $PAGI::Server::Protocol::HTTP1::IMPLEMENTATION }

sub loop ($self) {
  return $self->{loop} //= _make_loop($self->{loop_type});
}

# The loop class: a name like 'Epoll' or a full class; by default IO::Async's own
# choice (Epoll when installed). The loop is IO::Async's one shared loop, so an app
# that calls IO::Async::Loop->new (even while its file loads) gets the server's loop.
sub _make_loop ($type) {
  my $shared = $IO::Async::Loop::ONE_TRUE_LOOP;
  return IO::Async::Loop->new unless defined $type && length $type;
  my $class = $type =~ /::/ ? $type : "IO::Async::Loop::$type";
  return $shared if $shared && ref $shared eq $class;
  (my $file = "$class.pm") =~ s{::}{/}g;
  require $file;
  my $loop = $class->new;
  $IO::Async::Loop::ONE_TRUE_LOOP = $loop;
  return $loop;
}

sub port ($self) { $self->{bound_port} // $self->{port} }

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
sub _lifespan_startup ($self) {
  my $loop = $self->loop;
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
      # Raising or returning before startup means: no lifespan support
      my $why = $f->is_failed ? ': ' . (($f->failure)[0] =~ s/\s+\z//r) : '';
      $self->log(info => "application does not support lifespan$why");
      $life->{supported} = 0;
      $startup->done;
    }
    elsif ($f->is_failed) {
      $self->log(error => 'lifespan application error: ' . (($f->failure)[0] =~ s/\s+\z//r));
    }
    $life->{shutdown}->done if $life->{shutdown} && !$life->{shutdown}->is_ready;
  });
  my $timeout = $loop->delay_future(after => LIFESPAN_TIMEOUT)->then(sub {
    Future->fail("lifespan startup did not finish within " . LIFESPAN_TIMEOUT . " seconds\n");
  });
  return Future->wait_any($startup, $timeout);
}

sub _lifespan_shutdown ($self) {
  my $life = $self->{lifespan};
  return Future->done unless $life && $life->{supported} && !$life->{app_future}->is_ready;
  my $f = $life->{shutdown} = $self->loop->new_future;
  $life->{shutdown_event}->done({type => 'lifespan.shutdown'});
  return Future->wait_any($f, $self->loop->delay_future(after => LIFESPAN_TIMEOUT));
}

# ---- listening and accepting -----------------------------------------------------

use constant {ACCEPT_BATCH => 64, WORKER_ACCEPT_BATCH => 4};

# Starts serving: lifespan startup, then bind and accept. Returns a Future.
sub listen ($self) {
  my $loop = $self->loop;
  return $self->_lifespan_startup->then(sub {
    $self->_open_listeners;
    $self->_start_accepting;
    Future->done($self);
  }, sub ($msg, @) {
    Future->fail("lifespan startup failed: $msg");
  });
}

# Binds every listening socket (once: in a pre-forked server the master does it and
# the workers share them), reports where, and calls on_listen
sub _open_listeners ($self) {
  return if $self->{listeners};
  my @l;
  for my $spec (@{$self->{listen_specs}}) {
    push @l, defined $spec->{path} ? $self->_bind_unix($spec->{path}) : $self->_bind_tcp($spec);
  }
  $self->{listeners} = \@l;
  my ($tcp) = grep { $_->{tcp} } @l;
  $self->{bound_port} = $tcp ? $tcp->{port} : undef;
  # Check the certificate now, before any worker exists
  $self->{ssl_ctx} = PAGI::Server::TLS::context($self) if $self->{tls};
  $self->{ssl_cert_pem} = PAGI::Server::TLS::server_pem($self->{ssl_cert}) if $self->{tls};
  # (the master of a pre-forked server has no loop: each worker makes its own)
  my $how = $self->{workers} ? ", $self->{workers} worker(s)" : ', loop ' . ref $self->loop;
  for my $l (@l) {
    my $where = $l->{tcp}
      ? sprintf('%s://%s:%d/', $self->{scheme}, $l->{host} =~ /:/ ? "[$l->{host}]" : $l->{host}, $l->{port})
      : "unix:$l->{path}" . ($self->{tls} ? ' (TLS)' : '');
    $self->log(info => sprintf 'PAGI::Server %s (backend %s%s) listening on %s',
      $VERSION, $self->backend, $how, $where);
  }
  $self->{on_listen}->($self) if $self->{on_listen};
}

sub _bind_tcp ($self, $spec) {
  # Not Blocking => 0 here: IO::Socket::IP then returns an unbound socket instead
  # of failing when the address is in use (and accept() on it fails forever)
  my $sock = IO::Socket::IP->new(
    LocalHost => $spec->{host},
    LocalPort => $spec->{port},
    Listen    => $self->{backlog},
    ReuseAddr => 1,
  ) or die "PAGI::Server: cannot listen on $spec->{host}:$spec->{port}: $@\n";
  $sock->blocking(0);
  return {fh => $sock, tcp => 1, host => $spec->{host}, port => $sock->sockport};
}

sub _bind_unix ($self, $path) {
  require IO::Socket::UNIX;
  if (-S $path) {
    # A socket file left by a server that died is removed; a live one is an error
    die "PAGI::Server: cannot listen on unix:$path: another server is listening there\n"
      if IO::Socket::UNIX->new(Peer => $path, Type => Socket::SOCK_STREAM());
    unlink $path;
  }
  elsif (-e $path) { die "PAGI::Server: cannot listen on unix:$path: the file exists and is not a socket\n" }
  my $sock = IO::Socket::UNIX->new(Local => $path, Type => Socket::SOCK_STREAM(),
    Listen => $self->{backlog})
    or die "PAGI::Server: cannot listen on unix:$path: $!\n";
  $sock->blocking(0);
  push @{$self->{unlink}}, [$path, $$];
  return {fh => $sock, tcp => 0, path => $path};
}

# Watches the listening sockets (in a worker: after its fork and lifespan startup)
sub _start_accepting ($self) {
  $self->_watch_listeners;
  $self->_tick_timer;
}

sub _watch_listeners ($self) {
  weaken(my $weak = $self);
  for my $l (@{$self->{listeners}}) {
    $self->loop->watch_io(handle => $l->{fh}, on_read_ready => sub { $weak->_accept($l) if $weak });
  }
}

# Out of file descriptors (or memory): the pending connection stays in the backlog
# and the listener stays readable, so retrying at once would spin (and flood the
# log). Stop watching the listeners for a moment instead; one warning per pause.
use constant ACCEPT_PAUSE => 0.5;

sub _pause_accepting ($self, $why) {
  return if $self->{accept_paused};
  $self->{accept_paused} = 1;
  $self->log(warn => "accept failed: $why; not accepting for " . ACCEPT_PAUSE . ' s');
  my $loop = $self->loop;
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
    $conn->[ON_READ]->() if $ssl->pending;
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
  my $loop = $self->loop;
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
  my $loop = $self->loop;
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
  my $loop = $self->loop;
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
    if ($opt{soft} && ref $c eq 'PAGI::Server::Connection') { $c->[KEEP] = 0 unless $c->[STARTED] }
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
  my $loop = $self->loop;
  $loop->unwatch_time($self->{grace_id}) if $self->{grace_id};
  $self->_stop_tick;
  # Held: a wait_any nobody references is destroyed, and its callback never runs
  $self->{lifespan_stop} = $self->_lifespan_shutdown->on_ready(sub {
    $self->{stopped}->done unless $self->{stopped}->is_ready;
  });
}

# Unix socket files this process created
sub _unlink_sockets ($self) {
  for (@{$self->{unlink} || []}) { unlink $_->[0] if $_->[1] == $$ }
}

# Blocks: serve until SIGINT/SIGTERM, then stop gracefully. Returns the exit status.
# With workers, this process becomes the master of a pre-forked pool instead.
sub run ($self) {
  if ($self->{workers}) {
    require PAGI::Server::Prefork;
    return PAGI::Server::Prefork->new($self)->run;
  }
  my $loop = $self->loop;
  local $SIG{PIPE} = 'IGNORE';
  # A stop signal during startup is kept and acted on once serving
  my $early;
  local @SIG{qw(INT TERM)} = map { my $s = $_; sub { $early //= $s } } qw(INT TERM);
  my $f = $self->listen;
  my $ok = eval { $f->get; 1 };
  if (!$ok) {
    my $err = $@ =~ s/\s+\z//r;
    $self->log(error => $err);
    $self->_unlink_sockets;
    return 1;
  }
  my $stop = sub ($sig) {
    $self->log(info => "SIG$sig received");
    $self->shutdown->on_done(sub { $loop->stop });
  };
  $self->_on_signals([qw(INT TERM)], $stop);
  $self->_on_signals(['USR1'], sub ($sig) { $self->_reopen_access_log });
  $self->_signalled($stop, $early) if $early;    # (acted on inside run, so that stop works)
  $loop->run;
  $self->_unlink_sockets;
  $self->log(info => "stopped after $self->{served} request(s)");
  return 0;
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
  my $ev = _loop_waits_in_ev($self->loop);
  for my $sig (@$signals) {
    if ($ev) { $self->{ev_signals}{$sig} = EV::signal($sig, sub { $self->_signalled($code, $sig) }) }
    else     { $SIG{$sig} = sub { $self->_signalled($code, $sig) } }
  }
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
    $self->loop->watch_io(handle => $r, on_read_ready => sub {
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
  my $loop = $self->{loop} = _make_loop($self->{loop_type});
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
  $self->_start_accepting;
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
    return $self->shutdown->on_done(sub { $self->loop->stop });
  }
  $self->_retire if $self->{max_requests} && $self->{served} >= $self->{max_requests};
}

# max_requests reached: stop accepting, tell the master (which starts the replacement
# at once), finish in-flight requests, exit
sub _retire ($self) {
  return if $self->{stopping};
  $self->log(info => "served $self->{served} request(s) (max_requests): retiring");
  $self->{notify}->('retire') if $self->{notify};
  $self->shutdown(soft => 1)->on_done(sub { $self->loop->stop });
}

sub load_app ($class, $file) {
  my $path = $file =~ m{\A/} ? $file : "./$file";
  my $app = do $path;
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

=head1 DESCRIPTION

PAGI::Server serves a PAGI application (PAGI specification 0.3: C<http> scopes with
streamed request and response bodies, files and trailers; C<websocket> scopes over
RFC 6455; C<sse> scopes for Server-Sent Events; and C<lifespan>) over HTTP/1.1, with
keep-alive, pipelining, HTTP/1.0, chunked bodies both ways and
C<Expect: 100-continue>. It runs on an L<IO::Async> loop (L<IO::Async::Loop::Epoll>
when installed). Malformed requests get a 4xx and a close; limits and timeouts are
options; application errors become 500 responses and a log line.

=head1 ATTRIBUTES

Given to C<new>; unknown options are an error.

=over

=item app

The PAGI application, a code reference returning a L<Future>. Required, unless
C<app_file> is given.

=item app_file

Instead of C<app>: a file whose last statement is the application (as
L</load_app> reads it). Without C<workers> it is loaded at once; with C<workers>
each worker loads it after the fork and the master never does, so a HUP (new
workers) runs the code as it is on disk then, modules it uses included (the CLI's
C<--no-preload>). A worker that cannot load it exits as one whose lifespan startup
failed: in the first generation that stops the server; after a HUP the old workers
keep serving.

=item host, port

Where to listen. Default C<127.0.0.1> and C<5000>; port C<0> picks a free port
(see C<port>).

=item loop, loop_type

An L<IO::Async::Loop> to use, or the name of a loop class (C<Epoll>, C<Poll>,
C<Select>, C<Mojo>, C<Glib> or a full class name). Default: Epoll when installed.
Every signal the server handles works on each of them (see L</SIGNALS>).

=item access_log

A filehandle for the access log (Common Log Format plus the time taken in
seconds), or a file name: the server appends to that file and opens it again on
SIGUSR1 (for log rotation). C<undef> disables it. Default C<STDERR>.

=item log_level, quiet

C<error>, C<warn>, C<info> (default) or C<debug>. C<quiet> lowers C<info> to C<warn>.

=item timeout

Seconds without progress while reading a request body or writing a response before
the connection is closed (408 when nothing was answered yet). Default 60.

=item header_timeout

Seconds from the first byte of a request head to its end (slow clients get 408).
Default 30.

=item keepalive_timeout

Seconds an idle connection is kept open, before the first request and between
requests. Default 5.

=item shutdown_timeout

Seconds in-flight requests get to finish after SIGINT/SIGTERM. Default 10.

=item max_header_size, max_headers, max_line

Largest request head in bytes (431 beyond), most header fields (431), longest
request line (414). Defaults 16384, 100, 8192.

=item max_body_size

Largest request body in bytes (413 beyond); 0 means no limit. Default 10 MiB.

=item max_ws_message_size

Largest WebSocket message (and frame) in bytes; a bigger one closes the connection
with 1009 (the app sees 1006). Default 16 MiB.

=item ws_close_timeout

Seconds a WebSocket peer has to answer the server's Close frame. Default 5.

=item root_path

The scope's C<root_path> (the mount point of the app). Default empty.

=item listen, socket

More places to listen. C<listen> is a list (or one string) of C<HOST:PORT>,
C<[IPv6]:PORT>, C<PORT> or C<unix:PATH>; C<socket> is a Unix domain socket path.
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
Needs C<workers>. Default 0 (never).

=item max_connections

The most connections a process (each worker) holds; a connection beyond it is
answered C<503 Service Unavailable> (text/plain, C<Connection: close>) and closed,
while the open ones carry on. Default 0 (no limit).

=item ssl_cert, ssl_key, ssl_ca, ssl_verify_client

Serve TLS on every listener: the certificate (PEM, intermediates after the leaf) and
its key. Scopes then have C<scheme> C<https> (WebSocket: C<wss>) and the C<tls>
extension (C<server_cert>, C<client_cert_chain>, C<client_cert_name>,
C<client_cert_error>, C<tls_version>, C<cipher_suite>), which plain connections never
have. C<ssl_verify_client> is C<none> (default), C<optional> (ask for a client
certificate, verify it against C<ssl_ca>, report a failure in C<client_cert_error>)
or C<require> (refuse the handshake without a valid one). The handshake runs inside
the loop without blocking and is bounded by C<header_timeout>. See
L<PAGI::Server::TLS>.

=item on_listen

A code reference called once with the server, right after the listening socket is
bound (so after lifespan startup) and before the first connection is accepted; C<<
$server->port >> then gives the bound port. Useful with C<port =E<gt> 0>, e.g. to tell a
parent process where to connect.

=back

=head1 METHODS

=head2 run

Starts (lifespan startup, listen), serves until SIGINT or SIGTERM, then stops
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

Lifespan startup then listen, as a L<Future>; for use inside your own loop.

=head2 shutdown

The graceful stop, as a L<Future>.

=head2 port

The port actually bound.

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
response took.

=head1 SEE ALSO

L<pagi-server>, L<PAGI::Server::Prefork>, L<PAGI::Server::TLS>,
L<PAGI::Server::Protocol::HTTP1>, the PAGI specification.

=cut
