package PAGI::Server;
use strict;
use warnings;
use experimental 'signatures';
use Carp ();
use Scalar::Util qw(refaddr weaken);
use Time::HiRes ();
use Future;
use IO::Async::Loop;
use IO::Async::Future;    # (loaded now: after user/group, @INC may not be readable)
use parent 'IO::Async::Notifier';

our $VERSION = '0.001';

# The codec backend wanted when PAGI_SERVER_BACKEND does not say (set before loading)
our $BACKEND;
BEGIN {
  require PAGI::Server::Protocol::Backend;
  $PAGI::Server::Protocol::Backend::PREFERENCE //= $BACKEND;
}

use PAGI::Server::Protocol::HTTP1;
use PAGI::Server::Config qw(:fields);
use PAGI::Server::Shared qw(:fields);
use PAGI::Server::Connection;
use PAGI::Server::AccessLog;
use PAGI::Server::Lifespan;
use PAGI::Server::Listeners;
use PAGI::Server::Loop;
use PAGI::Server::Process;
use PAGI::Server::Tick;
use PAGI::Server::Handoff;    # (at compile time: it reads how this process was started)
use PAGI::Server::Proxy;

# A server is an IO::Async::Notifier. Its options are a checked, read-only record
# (PAGI::Server::Config: {cfg}); what its connections share with it, a record of its
# own (PAGI::Server::Shared: {live}); its listening sockets, its process and its
# lifespan are objects it calls (PAGI::Server::Listeners, ::Process, ::Lifespan);
# PAGI::Server::Prefork runs the workers. This module keeps the lifecycle: options,
# listen, accept, tick, shutdown, run.

sub new ($class, %opt) {
  my $self = bless {conns => {}, handshakes => {}, running => 0}, $class;
  $self->{live} = bless [], 'PAGI::Server::Shared';
  @{$self->{live}}[APP_STATE, SERVED, NOW] = ({}, 0, time);
  # (what the objects it calls log through: weak, they live inside the server)
  weaken(my $weak = $self);
  $self->{log_to} = sub ($level, $msg) { $weak->log($level, $msg) if $weak };
  $self->{process} = PAGI::Server::Process->new(log => $self->{log_to});
  $self->configure(%opt);
  return $self;
}

# new's options, and later changes to them (IO::Async::Notifier's configure): ours and
# upstream PAGI::Server's (PAGI::Server::Config reads both)
sub configure ($self, %opt) {
  my %notifier = map { exists $opt{$_} ? ($_ => delete $opt{$_}) : () } qw(notifier_name on_error);
  my $old = $self->{cfg};
  my $cfg = PAGI::Server::Config->new(\%opt, $old, $self->{listeners} && $self->{listeners}->is_open);
  if (defined $cfg->[BACKEND] && lc $cfg->[BACKEND] ne 'auto' && uc $cfg->[BACKEND] ne $self->backend) {
    Carp::croak("PAGI::Server->new: backend '$cfg->[BACKEND]' requested but " . $self->backend
      . ' is loaded; set PAGI_SERVER_BACKEND before loading PAGI::Server');
  }
  my $live = $self->{live};
  if (!$old || exists $opt{access_log} || exists $opt{access_log_format}) {
    $live->[ACCESS_LOGGER] = defined $cfg->[ACCESS_LOG]
      ? PAGI::Server::AccessLog->new($cfg->[ACCESS_LOG], $cfg->[ACCESS_LOG_FORMAT]) : undef;
  }
  $self->{cfg} = $cfg;
  require PAGI::Server::Connection::HTTP2 if $cfg->[HTTP2];
  if (!$old || grep { exists $opt{$_} } qw(app app_file app_loader psgi psgi_app scope_loop proxy_headers
    forwarded_allow_ips)) {
    if (!$old || grep { exists $opt{$_} } qw(app app_file app_loader psgi_app)) {
      $self->{app} = $cfg->[APP];
      # An app file: loaded now, or with workers by each worker (so a HUP loads it
      # anew); with user/group, once privileges are dropped
      $self->{app} = $self->load_app($cfg->[APP_FILE])
        if !defined $cfg->[APP_LOADER] && defined $cfg->[APP_FILE] && !$cfg->[WORKERS]
        && !defined $cfg->[USER] && !defined $cfg->[GROUP];
    }
    $self->_wrap_app;
  }
  $self->SUPER::configure(%notifier);
  return;
}

# The application as connections call it: PSGI through the adapter; with scope_loop,
# through a wrapper that puts the server's loop in the scope (pagi.loop, spec 0.1);
# with proxy_headers, through one that reads a trusted proxy's forwarded headers
# (uvicorn's middleware; a WebSocket's are read as it takes its connection over). So
# a server without them pays nothing.
sub _wrap_app ($self) {
  my $app = $self->{app};
  my $cfg = $self->{cfg};
  return $self->{live}[RUN_APP] = undef unless ref $app eq 'CODE';
  my $run = $app;
  if ($cfg->[PSGI]) {
    # Upgrade and event-stream requests reach a PSGI app as the plain HTTP requests
    # they are (the options record's plain_http)
    require PAGI::Server::PSGI;
    $run = PAGI::Server::PSGI::to_app($app, server => $self);
  }
  elsif ($cfg->[SCOPE_LOOP]) {
    weaken(my $server = $self);
    $run = sub { $_[0]{pagi}{loop} //= $server->loop; goto &$app };
  }
  if ($cfg->[PROXY_HEADERS]) {
    my ($inner, $set) = ($run, $cfg->[FORWARDED_TRUST]);
    $run = sub {
      my $scope = $_[0];
      my $type = $scope->{type};
      PAGI::Server::Proxy::forwarded($set, $scope) if ($type eq 'http' || $type eq 'sse')
        && PAGI::Server::Proxy::trusts($set, $scope->{client} && $scope->{client}[0]);
      goto &$inner;
    };
  }
  return $self->{live}[RUN_APP] = $run;
}

# The value of an option (by our name or upstream's)
sub option ($self, $name) { $self->{cfg}->get($name) }

sub backend ($class_or_self) { $PAGI::Server::Protocol::HTTP1::IMPLEMENTATION }

# (PAGI::Server::Loop::class_of, under its old name)
sub loop_class ($type) { PAGI::Server::Loop::class_of($type) }

# The loop the server runs on: the one it was added to ($loop->add($server)), else
# the loop option, else a new one (loop_type) that it adds itself to
sub _loop ($self) {
  return $self->{live}[IO_LOOP] if $self->{in_loop};
  my $loop = $self->{cfg}[LOOP] // PAGI::Server::Loop::make($self->{cfg}[LOOP_TYPE]);
  $loop->add($self);
  return $loop;
}

sub _add_to_loop ($self, $loop) {
  # (a worker leaves its master's loop for a fresh one of its own)
  Carp::croak('PAGI::Server: added to a loop, but it was given another one (the loop option)')
    if $self->{cfg}[LOOP] && $self->{cfg}[LOOP] != $loop && !$self->{worker};
  $self->{live}[IO_LOOP] = $loop;
  $self->{live}[EPOLL_SET] = PAGI::Server::Loop::epoll_of($loop);
  $self->{in_loop} = 1;
}

# $loop->remove($server): whatever still runs on that loop stops now (a worker that
# leaves its master's loop, as_worker, touches nothing on it)
sub _remove_from_loop ($self, $loop) {
  if (!$self->{leaving}) {
    if (my $master = $self->{master}) { $master->stop_now }
    elsif ($self->{listeners} && $self->{listeners}->is_open || %{$self->{conns}}) { $self->_stop_now }
    $self->{process}->forget_signals;
  }
  $self->{in_loop} = 0;
  @{$self->{live}}[IO_LOOP, EPOLL_SET] = ();
}

# The port bound (the first TCP listener's) while listening, else the one asked for;
# undef without a TCP listener (a Unix socket only)
sub port ($self) {
  return $self->{listeners}->port if $self->{listeners} && $self->{listeners}->is_open;
  my ($tcp) = grep { !defined $_->{path} } @{$self->_specs};
  return $tcp ? $tcp->{port} : undef;
}

# Upstream's accessors: the first Unix socket's path; every listener as
# {type => 'tcp', host, port} or {type => 'unix', path, socket_mode} (the bound port
# once listening); serving or not; TLS support installed
sub _specs ($self) { $self->{listeners} ? $self->{listeners}->specs : $self->{cfg}[LISTEN_SPECS] }

sub socket_path ($self) {
  my ($unix) = grep { defined $_->{path} } @{$self->_specs};
  return $unix ? $unix->{path} : undef;
}

sub listeners ($self) {
  return $self->{listeners}->describe if $self->{listeners};
  return [map { defined $_->{path} ? {type => 'unix', path => $_->{path}, socket_mode => $_->{mode}}
    : {type => 'tcp', host => $_->{host}, port => $_->{port}} } @{$self->_specs}];
}

sub is_running ($self) { $self->{running} ? 1 : 0 }

sub has_tls ($class_or_self) {
  return eval { require IO::Socket::SSL; require Net::SSLeay; 1 } ? 1 : 0;
}

# HTTP/2 support installed: the XS backend has nghttp2; the pure-Perl one needs
# Protocol::HTTP2
sub has_http2 ($class_or_self) {
  return eval { require PAGI::Server::Protocol::HTTP2; 1 } ? 1 : 0;
}

sub effective_max_connections ($self) { $self->{cfg}[MAX_CONNECTIONS] }

sub env ($self) { $self->{cfg}[MODE] }

sub connection_count ($self) { scalar keys %{$self->{conns}} }

# Requests served by this process; whether it is a pre-forked worker
sub served ($self) { $self->{live}[SERVED] }
sub is_worker ($self) { $self->{worker} ? 1 : 0 }

# ---- logging -------------------------------------------------------------------

# A log line goes out through warn (to stderr), as upstream's do: an embedding program
# catches them with $SIG{__WARN__}
sub log ($self, $level, $msg) {
  return if $PAGI::Server::Config::LEVEL{$level} > $self->{cfg}[LEVEL];
  my @t = localtime;
  warn sprintf "[%04d-%02d-%02d %02d:%02d:%02d] [%s] %s\n",
    $t[5] + 1900, $t[4] + 1, @t[3, 2, 1, 0], $level, ($self->{log_prefix} // '') . $msg;
}

# SIGUSR1: the access log file is opened again (after a rotation)
sub reopen_logs ($self) {
  my $logger = $self->{live}[ACCESS_LOGGER] or return;
  my $said = $logger->reopen or return;
  $self->log(@$said);
}

# The access log's lines so far reach its file (a worker, before it exits)
sub flush_logs ($self) {
  my $logger = $self->{live}[ACCESS_LOGGER] or return;
  my $err = $logger->tick;
  $self->log(error => $err) if $err;
}

# ---- listening and accepting -----------------------------------------------------

use constant {ACCEPT_BATCH => 64, WORKER_ACCEPT_BATCH => 4};

# Starts serving (upstream's embedding API: $loop->add($server); $server->listen->get):
# bind, lifespan startup, accept. Returns a Future of the server. INT and TERM then
# stop it gracefully and stop the loop. With workers (or max_requests), this process
# becomes their master on the loop instead (PAGI::Server::Prefork): the Future is done
# once they are forked. (A worker of PAGI::Server::Prefork serves through it too, on
# the sockets its master bound.)
sub listen ($self) {
  return Future->done($self) if $self->{running};
  my $loop = $self->_loop;
  return $self->_listen_master($loop) if !$self->{worker} && ($self->{cfg}[WORKERS] || $self->{cfg}[MAX_REQUESTS]);
  # Bound first, so that a taken address fails before the application starts
  eval { $self->_start; 1 } or return Future->fail($@);
  $self->{lifespan} = PAGI::Server::Lifespan->new(app => $self->{live}[RUN_APP], state => $self->{live}[APP_STATE],
    mode => $self->{cfg}[LIFESPAN_MODE], timeout => $self->{cfg}[LIFESPAN_STARTUP_TIMEOUT],
    worker_num => $self->{worker} && $self->{worker}{num}, loop => $loop, log => $self->{log_to});
  return $self->{lifespan}->startup->then(sub {
    $self->_announce unless $self->{worker};
    $self->_start_accepting;
    $self->{running} = 1;
    return Future->done($self) if $self->{worker};
    $self->serving;
    $self->{process}->on_signals($loop, [qw(INT TERM)], sub ($sig) {
      $self->log(info => "SIG$sig received");
      $self->shutdown->on_done(sub { $loop->stop });
    });
    Future->done($self);
  }, sub ($msg, @) {
    $self->close_listeners unless $self->{worker};
    Future->fail("lifespan startup failed: $msg");
  });
}

# The master of pre-forked workers: the sockets bound (pid file, user/group) and
# announced here, then PAGI::Server::Prefork forks the workers on them and supervises
# them from this loop; its signals (INT, TERM, HUP, TTIN, TTOU, USR1, USR2) are the
# master's
sub _listen_master ($self, $loop) {
  my $cfg = $self->{cfg};
  # Recycling needs a process to replace the one that retires: without workers, one
  # worker, under a master that starts its successor
  $self->log(info => "max_requests without workers: serving from one worker process, "
    . "replaced after every $cfg->[MAX_REQUESTS] request(s)") if !$cfg->[WORKERS];
  $self->{pool} = $cfg->[WORKERS] || 1;
  require PAGI::Server::Prefork;
  if (!eval { $self->_start; 1 }) {
    my $err = $@;
    $self->close_listeners;
    return Future->fail($err);
  }
  $self->_announce;
  my $master = $self->{master} = PAGI::Server::Prefork->new(server => $self, workers => $self->{pool}, loop => $loop);
  $master->start;
  $master->finished->on_ready(sub { $self->{running} = 0 });
  return Future->done($self);
}

# Everything before serving, in this order: the listening sockets (bound, or
# inherited), the pid file (while still root), the privilege drop, and then an
# application that was left to load (app_loader, or app_file with user/group), so
# that it loads as the user it runs as. In a worker: its own TLS context, and the
# application when each worker loads it.
sub _start ($self) {
  my $cfg = $self->{cfg};
  if (!$self->{listeners} || !$self->{listeners}->is_open && !$self->{worker}) {
    my $specs = $cfg->[LISTEN_SPECS];
    $self->{listeners} = PAGI::Server::Listeners->new(specs => $specs, backlog => $cfg->[LISTENER_BACKLOG],
      reuseport => $cfg->[REUSEPORT], hold => $cfg->[REUSEPORT] && $self->{pool},
      addresses_given => (grep { $_->{given} } @$specs) || defined $cfg->[SOCKET] || defined $cfg->[LISTEN],
      log => $self->{log_to});
    $self->{listeners}->open;
    $self->{process}->write_pid_file($cfg->[PID_FILE]) if defined $cfg->[PID_FILE] && !$self->{listeners}->is_upgrade;
    $self->{process}->drop_privileges($cfg->[USER], $cfg->[GROUP], $cfg->[LOOP_TYPE])
      if defined $cfg->[USER] || defined $cfg->[GROUP];
  }
  # Check the certificate now, before any worker exists (and again in each worker:
  # a context per process)
  if ($cfg->[IS_TLS] && (!$self->{ssl_ctx} || $self->{worker})) {
    require PAGI::Server::TLS;
    $self->{ssl_ctx} = PAGI::Server::TLS::context($cfg);
    $self->{ssl_cert_pem} //= PAGI::Server::TLS::server_pem($cfg->[SSL_CERT]);
  }
  return if $self->{app} || $self->{pool} && !$self->{worker} && !$cfg->[APP_LOADER];
  $self->{app} = $cfg->[APP_LOADER] && !$self->{worker} ? $cfg->[APP_LOADER]->() : $self->load_app($cfg->[APP_FILE]);
  Carp::croak('PAGI::Server: app_loader did not return a code reference') unless ref $self->{app} eq 'CODE';
  $self->_wrap_app;
}

sub _announce ($self) {
  my $cfg = $self->{cfg};
  # (the master of a pre-forked server has no loop: each worker makes its own)
  my $how = $self->{pool} ? ", $self->{pool} worker(s)" : ', loop ' . ref $self->_loop;
  for my $l (@{$self->{listeners}->sockets}) {
    my $where = $l->{tcp}
      ? sprintf('%s://%s:%d/', $cfg->[SCHEME], $l->{host} =~ /:/ ? "[$l->{host}]" : $l->{host}, $l->{port})
      : "unix:$l->{path}" . ($cfg->[IS_TLS] ? ' (TLS)' : '');
    $where .= $l->{inherited} eq 'systemd' ? ' (socket from systemd)' : ' (socket from the previous server)'
      if $l->{inherited};
    $self->log(info => sprintf 'PAGI::Server %s (backend %s%s) listening on %s',
      $VERSION, $self->backend, $how, $where);
  }
  $self->{running} = 1;
  $cfg->[ON_LISTEN]->($self) if $cfg->[ON_LISTEN];
}

# This process serves (a single process listens; a master's first workers are ready):
# systemd is told, and the previous server of an upgrade retires (PAGI::Server::Prefork's
# master calls it too)
sub serving ($self) {
  $self->{process}->serving($self->{listeners}->take_upgrade, $self->{cfg}[PID_FILE]);
}

# The listening sockets' handles (a USR2 upgrade passes them on), and closing them
sub listening_handles ($self) { [map { $_->{fh} } @{$self->{listeners} ? $self->{listeners}->sockets : []}] }

sub close_listeners ($self, %opt) {
  return unless $self->{listeners};
  $self->{listeners}->close;
  $self->{listeners}->unlink_files unless $opt{keep_files} || $self->{process}->handed_over || $self->{worker};
}

# The previous server of a USR2 upgrade ({ready, old_pid}) while this one does not
# serve yet, else undef
sub upgrading ($self) { $self->{listeners} && $self->{listeners}->upgrade }

# Watches the listening sockets (in a worker: after its lifespan startup)
sub _start_accepting ($self) {
  my $listeners = $self->{listeners};
  $listeners->own_sockets if $self->{worker} && $self->{cfg}[REUSEPORT];
  my $batch = $self->{worker} ? WORKER_ACCEPT_BATCH : ACCEPT_BATCH;
  # (the codec writes it: one value per process)
  PAGI::Server::Protocol::HTTP1::set_server_header($self->{cfg}[SERVER_HEADER]);
  weaken(my $weak = $self);
  my $on_socket = sub ($fh, $l, $info) { $weak->_connection($fh, $l, $info) if $weak };
  $listeners->watch($self->_loop, sub ($l) {
    return unless $weak;
    return $weak->retire if $weak->{cfg}[MAX_REQUESTS] && $weak->{live}[SERVED] >= $weak->{cfg}[MAX_REQUESTS];
    $listeners->accept($l, $batch, $on_socket);
  });
  $self->_tick_timer;
}

# An accepted socket becomes a connection (once a PROXY header is read, a TLS
# handshake done); over the connection limit: a 503 (the wire-error path), then close
# ($info: the socket's ends as the accept gave them, $header: the PROXY protocol's)
sub _connection ($self, $fh, $l, $info, $header = undef) {
  my $addrs = $info;
  if ($self->{cfg}[PROXY_PROTOCOL]) {
    return $self->_proxy_accept($fh, $l, $info) unless $header;
    $addrs = PAGI::Server::Proxy::addresses($header) // $info;
  }
  return $self->_tls_accept($fh, $l, $addrs) if $self->{cfg}[IS_TLS];
  my $conn = PAGI::Server::Connection->new($self, @$self{qw(cfg live)}, $fh, undef, $addrs);
  $self->{conns}{refaddr $conn} = $conn;
  my $max = $self->{cfg}[MAX_CONNECTIONS];
  _refuse($conn, keys(%{$self->{conns}}) - 1, $max) if $max && keys %{$self->{conns}} > $max;
}

# Over the connection limit: 503 with a Retry-After (a client that honours it comes
# back once others have finished), logged as upstream words it
use constant RETRY_AFTER => 5;

sub _refuse ($conn, $open, $max) {
  $conn->_wire_error('at_capacity', [['Retry-After', RETRY_AFTER]], "$open/$max");
}

# proxy_protocol: a peer not in forwarded_allow_ips is refused; the header is read in
# the loop (bounded by the keep-alive timeout, the wait before a request), among the
# handshakes, before TLS or HTTP: its addresses are the connection's
sub _proxy_accept ($self, $fh, $l, $info) {
  my $cfg = $self->{cfg};
  my $peer = defined $info->[0] ? "$info->[0]:$info->[1]" : 'unix socket';
  if (!PAGI::Server::Proxy::trusts($cfg->[FORWARDED_TRUST], $info->[0])) {
    $self->log(warn => "$peer: not in forwarded_allow_ips, may not send a PROXY protocol header; closed");
    return close $fh;
  }
  weaken(my $weak = $self);
  PAGI::Server::Proxy::read_header(loop => $self->_loop, sock => $fh, peer => $peer, log => $self->{log_to},
    started => sub ($hs) {
      $hs->{deadline} = $weak->{live}[NOW] + $weak->{cfg}[KEEPALIVE_TIMEOUT_S];
      $weak->{handshakes}{refaddr $hs} = $hs;
    },
    ended => sub ($hs) {
      return unless $weak;
      delete $weak->{handshakes}{refaddr $hs};
      $weak->_maybe_stopped if $weak->{live}[STOPPING];
    },
    done => sub ($header) {
      return close $fh unless $weak && !$weak->{live}[STOPPING];
      $weak->_connection($fh, $l, $info, $header);
    });
}

# TLS: the handshake runs in the loop (bounded by header_timeout); the connection
# exists once it is done ($addrs: a PROXY protocol header's)
sub _tls_accept ($self, $fh, $l, $addrs = undef) {
  bless $fh, $l->{tcp} ? 'IO::Socket::IP' : 'IO::Socket::UNIX';
  my $max = $self->{cfg}[MAX_CONNECTIONS];
  my $over = $max && keys(%{$self->{conns}}) + keys(%{$self->{handshakes}}) >= $max;
  weaken(my $weak = $self);
  PAGI::Server::TLS::handshake(loop => $self->_loop, ctx => $self->{ssl_ctx}, sock => $fh,
    cert_pem => $self->{ssl_cert_pem}, log => $self->{log_to},
    started => sub ($hs) {
      $hs->{deadline} = $weak->{live}[NOW] + $weak->{cfg}[HEADER_TIMEOUT];
      $weak->{handshakes}{refaddr $hs} = $hs;
    },
    ended => sub ($hs) {
      return unless $weak;
      delete $weak->{handshakes}{refaddr $hs};
      $weak->_maybe_stopped if $weak->{live}[STOPPING];
    },
    done => sub ($ssl, $info) {
      return close $ssl unless $weak && !$weak->{live}[STOPPING];
      my $conn = PAGI::Server::Connection->new($weak, @$weak{qw(cfg live)}, $ssl, $info, $addrs);
      $weak->{conns}{refaddr $conn} = $conn;
      return _refuse($conn, keys(%{$weak->{conns}}) - 1, $weak->{cfg}[MAX_CONNECTIONS]) if $over;
      # ALPN chose HTTP/2
      return 'PAGI::Server::Connection::HTTP2'->take_over($conn)
        if $weak->{cfg}[HTTP2] && ($ssl->alpn_selected // '') eq 'h2';
      # Bytes OpenSSL already decrypted do not make the socket readable again
      $conn->_read_pending if $ssl->pending;
    });
}

# A connection closed (PAGI::Server::Connection calls it)
sub connection_closed ($self, $conn) {
  delete $self->{conns}{refaddr $conn};
  $self->_maybe_stopped if $self->{live}[STOPPING];
}

# Once a second (PAGI::Server::Tick): the coarse clock, the connections' deadlines,
# TLS handshakes' header_timeout, a worker's heartbeat, the access log's flush
sub _tick_timer ($self) {
  weaken(my $weak = $self);
  $self->{tick} = PAGI::Server::Tick->new($self->_loop, sub {
    return unless $weak;
    my $now = $weak->{live}[NOW] = time;
    for my $c (values %{$weak->{conns}}) { $c->_tick($now) }
    # (deadlines: a TLS handshake's the head timeout, a PROXY header's the keep-alive one)
    $_->{deadline} < $now and $_->{abort}->('timeout') for values %{$weak->{handshakes}};
    $weak->{worker}{tick}->() if $weak->{worker};
    $weak->{live}[ACCESS_LOGGER]->tick if $weak->{live}[ACCESS_LOGGER];
  });
}

sub _stop_tick ($self) { my $tick = delete $self->{tick}; $tick->stop if $tick }

# ---- stopping ------------------------------------------------------------------

# Graceful stop: no new connections, busy ones finish (bounded), lifespan shutdown.
# soft => 1 (a worker retiring while others serve on): idle keep-alive connections
# are not cut; each is closed after its next response or when its idle time runs out,
# so a client that has just sent a request on one is answered, not reset.
sub shutdown ($self, %opt) {
  # A master: its workers stop (asked again: at once); done once they are all gone
  # (the Future is the server's to hold, as a single process's is)
  if (my $master = $self->{master}) {
    my $f = $master->stop;
    return $self->{stopped} //= $f->then(sub { Future->done($self) });
  }
  my $live = $self->{live};
  if ($self->{stopped}) {
    # Asked again: a soft stop becomes a normal one; a normal one closes everything now
    return $self->{stopped} if $opt{soft} || $self->{stopped}->is_ready;
    my $force = !$live->[SOFT_STOP];
    $live->[SOFT_STOP] = 0;
    $self->log(info => 'closing ' . $self->connection_count . ' connection(s) now')
      if $force && $self->connection_count;
    $_->_shutdown($force) for values %{$self->{conns}};
    return $self->{stopped};
  }
  # Not serving (never listened, or removed from its loop): nothing to stop
  return Future->done($self) unless $self->{listeners} && $self->{listeners}->is_open && $self->{in_loop};
  my $loop = $self->_loop;
  $self->{running} = 0;
  $live->[STOPPING] = 1;
  $live->[SOFT_STOP] = $opt{soft} ? 1 : 0;
  $self->{stopped} = $loop->new_future;
  # (a worker closes only its copies: the master keeps the sockets for the others;
  # the socket files this process made go now, unless a new server took them over)
  $self->close_listeners;
  $_->{abort}->() for values %{$self->{handshakes}};
  $self->log(info => 'shutting down: waiting for ' . $self->connection_count . ' connection(s)')
    if $self->connection_count;
  for my $c (values %{$self->{conns}}) {
    if ($opt{soft}) { $c->_soft_stop }
    else { $c->_shutdown }
  }
  weaken(my $weak = $self);
  $self->{grace_id} = $loop->watch_time(after => $self->{cfg}[SHUTDOWN_TIMEOUT], code => sub {
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
  my $life = $self->{lifespan};
  $self->{lifespan_stop} = ($life ? $life->shutdown($self->{cfg}[SHUTDOWN_TIMEOUT]) : Future->done)->on_ready(sub {
    $self->{stopped}->done($self) unless $self->{stopped}->is_ready;
  });
}

# Removed from its loop while serving: everything that runs on the loop stops now
sub _stop_now ($self) {
  my $loop = $self->{live}[IO_LOOP];
  $self->{running} = 0;
  $self->{live}[STOPPING] ||= 1;
  $self->close_listeners;
  $_->{abort}->() for values %{$self->{handshakes}};
  $_->_shutdown(1) for values %{$self->{conns}};
  $loop->unwatch_time(delete $self->{grace_id}) if $self->{grace_id};
  $self->_stop_tick;
  $self->{stopped}->done($self) if $self->{stopped} && !$self->{stopped}->is_ready;
}

# max_requests reached (or a PSGI app's harakiri): stop accepting, tell the master
# (which starts the replacement at once), finish in-flight requests, exit
sub retire ($self) {
  return if $self->{live}[STOPPING];
  $self->log(info => "served $self->{live}[SERVED] request(s) (max_requests): retiring")
    if $self->{cfg}[MAX_REQUESTS] && $self->{live}[SERVED] >= $self->{cfg}[MAX_REQUESTS];
  $self->{worker}{notify}->('retire') if $self->{worker};
  $self->shutdown(soft => 1)->on_done(sub { $self->_loop->stop });
}

# Blocks: serve until SIGINT/SIGTERM, then stop gracefully. Returns the exit status.
# Built on listen: the loop, listen, $loop->run. With workers, this process becomes
# their master (listen), on a plain loop of its own unless it was given one: the
# workers make theirs after the fork (loop_type) and inherit no event library's state.
sub run ($self) {
  my $cfg = $self->{cfg};
  $self->{process}->raise_nofile;
  PAGI::Server::Loop::for_master($cfg->[LOOP_TYPE])->add($self)
    if !$self->{in_loop} && !$cfg->[LOOP] && ($cfg->[WORKERS] || $cfg->[MAX_REQUESTS]);
  my $loop = $self->_loop;
  local $SIG{PIPE} = 'IGNORE';
  # A stop signal during startup is kept and acted on once serving (USR2 then has
  # nothing to upgrade: it is ignored rather than stopping the process); a master's
  # signals are all kept, in order (its pid file is written before it takes them)
  my @early;
  my $master = $cfg->[WORKERS] || $cfg->[MAX_REQUESTS];
  my @keep = $master ? qw(INT TERM QUIT HUP TTIN TTOU USR1 USR2) : qw(INT TERM);
  local @SIG{@keep} = map { my $s = $_; sub { push @early, $s } } @keep;
  local $SIG{USR2} = 'IGNORE' unless $master;
  my $ok = eval { $self->listen->get; 1 };
  if (!$ok) {
    my $err = $@ =~ s/\s+\z//r;
    $self->log(error => $err);
    $self->{listeners}->unlink_files if $self->{listeners};
    $self->{process}->remove_pid_file;
    return 1;
  }
  # (listen handles INT and TERM from here on; a master, every signal it takes)
  my $process = $self->{process};
  if (!$self->{master}) {
    $process->on_signals($loop, ['USR1'], sub ($sig) { $self->reopen_logs });
    $process->on_signals($loop, ['USR2'], sub ($sig) {
      return $self->log(warn => 'SIGUSR2 ignored: the server is stopping') if $self->{live}[STOPPING];
      $process->upgrade($loop, $self->listening_handles, sub {
        $self->shutdown(soft => 1)->on_done(sub { $loop->stop });
      });
    });
  }
  # (acted on inside run, so that stop works)
  if ($self->{master}) { $self->{master}->signal($_) for @early }
  elsif (@early) {
    $process->queue(sub ($sig) {
      $self->log(info => "SIG$sig received");
      $self->shutdown->on_done(sub { $loop->stop });
    }, $early[0]);
  }
  $loop->run;
  $process->remove_pid_file;
  return $self->{master}->status if $self->{master};
  # (after an upgrade the socket files are the new server's)
  $self->{listeners}->unlink_files unless $process->handed_over;
  $self->log(info => "stopped after $self->{live}[SERVED] request(s)");
  return 0;
}

# ---- a worker of a pre-forked server -----------------------------------------------

# PAGI::Server::Prefork, in a worker process it forked: this server serves as worker
# $num (lifespan's worker_num; its log lines say so; it takes a few connections per
# wake-up, not 64, so that a burst is spread over the workers), on a fresh loop of
# its own; $notify->(WORD) tells the master, $tick runs once a second. Then listen
# (lifespan startup, accept) and shutdown work as in a single process.
sub as_worker ($self, $num, $notify, $tick) {
  # The master's loop is left behind (nothing on it is touched: it is the parent's)
  if (my $old = $self->loop) {
    local $self->{leaving} = 1;
    $old->remove($self);
  }
  delete $self->{master};
  $self->{worker} = {num => $num, notify => $notify, tick => $tick};
  $self->{log_prefix} = "[worker $num pid $$] ";
  # (the master announced the sockets; this process serves once it has listened)
  $self->{running} = 0;
  my $loop = PAGI::Server::Loop::make($self->{cfg}[LOOP_TYPE], 1);
  $loop->add($self);
  $self->{live}[NOW] = time;
  $self->{live}[ACCESS_LOGGER]->collect if $self->{live}[ACCESS_LOGGER];
  return $loop;
}

# The application file, loaded as plackup and upstream's runner load one: by its
# absolute path, with $0 and @ARGV naming it while it loads, and FindBin (when loaded)
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

  # With workers, the same: listen forks them and returns; the loop runs their master
  my $pool = PAGI::Server->new(app => $app, port => 5000, workers => 4);
  $loop->add($pool);
  $pool->listen->get;
  $loop->run;                    # until a signal, or $pool->shutdown from your code

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

C<new> and C<configure> take ours and upstream PAGI::Server's options (names and
shapes: C<timeout>, C<max_header_count>, C<lifespan>, C<ssl =E<gt> {...}>,
C<disable_tls>, C<listen =E<gt> [{...}]>, C<psgi_app>); an unknown one is an error
naming the nearest known one, and the upstream options this server has no mechanism
for are refused, saying why. Every option, with its default, is in
L<PAGI::Server::Config/OPTIONS>, made from the one table that C<pagi-server --help>
is made from too. The most used: C<app>, C<host>, C<port>, C<listen>, C<socket>,
C<workers>, C<access_log>, C<ssl_cert>/C<ssl_key>, the limits (C<max_*>) and the
timeouts (C<*_timeout>).

=head1 METHODS

=head2 run

Raises the soft limit of open files to the hard limit (with L<BSD::Resource>; said
at C<debug> level, as is its absence), starts (lifespan startup, listen), serves
until SIGINT or SIGTERM, then stops
gracefully: no new connections, idle ones are closed, in-flight requests get
C<shutdown_timeout> seconds, then lifespan shutdown runs; a second signal closes the
remaining connections at once. Returns the exit status (0, or 1 when startup
failed). It is C<listen> and C<< $loop->run >>: with C<workers>, the process becomes
the master of the pool (on a plain loop of its own: Epoll or Poll, whatever
C<loop_type> the workers run on) and returns when every worker has stopped.

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
loop. With C<workers> (or C<max_requests>), it binds, forks the workers and returns
(the Future is done once they are forked; each makes a fresh loop and runs lifespan
there), and the process is their master on your loop: C<< $loop->run >> runs it,
with its signals (INT, TERM, QUIT, HUP, TTIN, TTOU, USR1, USR2: see L</SIGNALS>),
respawns and heartbeats; C<shutdown> stops the workers gracefully, and its Future is
done once they are gone. A signal, or workers that cannot start, stop the workers and
then the loop.

=head2 shutdown

The graceful stop, as a L<Future> of the server: no new connections (the listening
sockets are closed and the Unix socket files removed), in-flight requests get
C<shutdown_timeout>, then lifespan shutdown. C<< $loop->remove($server) >>
afterwards; removing a server that still serves closes everything at once (without
lifespan shutdown).

=head2 port

The port actually bound (the first TCP listener's) while listening, else the one
asked for; undef when there is no TCP listener (a Unix socket only).

=head2 socket_path, listeners, is_running, connection_count, effective_max_connections

The first Unix socket's path (or undef); every listener as C<{type =E<gt> 'tcp',
host, port}> or C<{type =E<gt> 'unix', path, socket_mode}>; whether it is serving;
the open connections; the connection limit (0: none).

=head2 configure

Changes options (as C<new> takes them); those that decide the sockets (C<host>,
C<port>, C<listen>, C<socket>, TLS, C<workers>, ...) cannot change once listening.
Connections opened after the change get the new options; open ones keep theirs.

=head2 option

C<< $server->option('timeout') >>: an option's value (upstream's names
work too).

=head2 has_tls, has_http2

Whether TLS support (IO::Socket::SSL) is installed, as upstream's; HTTP/2: 0.

=head2 load_app

C<< PAGI::Server->load_app($file) >>: the application a file returns, loaded as
plackup does (by its absolute path, C<$0> naming it, C<FindBin> refreshed).

=head2 backend

C<XS> or C<PP>: which codec implementation is active.

=head2 served

Requests served by this process.

=head1 INTERNAL METHODS

For L<PAGI::Server::Prefork> and the connections (L<PAGI::Server::Connection>), not
for applications: C<serving> (tell systemd, and the previous server of an upgrade), C<listening_handles>,
C<close_listeners>, C<as_worker($num, $notify, $tick)> (serve as a pre-forked worker,
on a fresh loop of its own), C<retire> (stop accepting, finish, exit: C<max_requests>),
C<reopen_logs> (SIGUSR1), C<connection_closed($conn)>.

=head1 IMPLEMENTATIONS

The byte-level work lives in the codecs, each implemented twice, in Rust reached
through XS and in pure Perl, with identical results (differential tests check it):
L<PAGI::Server::Protocol::HTTP1> (request heads, chunked bodies, response heads,
accepting sockets), L<PAGI::Server::Protocol::WebSocket> (frames, UTF-8 checks,
permessage-deflate) and L<PAGI::Server::Protocol::HTTP2> (nghttp2 in XS). The XS
backend is used when it was built (C<perl Makefile.PL && make>);
C<PAGI_SERVER_BACKEND=pp> forces pure Perl, C<=xs> demands XS; C<$PAGI::Server::BACKEND>
set before loading PAGI::Server decides when the variable does not.
C<< PAGI::Server->backend >>, C<pagi-server --version> and the startup log line say
which one is active; L<PAGI::Server::Protocol::Backend> makes the one choice for all.

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

L<pagi-server>, L<PAGI::Server::Config> (the options), L<PAGI::Server::Runner>,
L<PAGI::Server::Prefork>, L<PAGI::Server::Listeners>, L<PAGI::Server::Process>,
L<PAGI::Server::Lifespan>, L<PAGI::Server::TLS>, L<PAGI::Server::Protocol::HTTP1>,
L<PAGI::Server::EventValidator> (the checks of an application's events), the PAGI
specification.

=cut
