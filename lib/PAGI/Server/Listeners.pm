package PAGI::Server::Listeners;
use strict;
use warnings;
use experimental 'signatures';
use Errno qw(EAGAIN EWOULDBLOCK EINTR ECONNABORTED EMFILE ENFILE ENOBUFS ENOMEM);
use IO::Socket::IP;
use Scalar::Util qw(weaken);
use Socket qw(SOCK_STREAM);
use Time::HiRes ();
use Carp ();
use PAGI::Server::Handoff;

our $VERSION = '0.001';

# The listening sockets of a server: bound from the listen specs (TCP, Unix), or
# inherited (systemd socket activation, the previous server of a USR2 upgrade); the
# accept loop on them; the Unix socket files this process made. It owns its state;
# the server calls it.
#
#   my $l = PAGI::Server::Listeners->new(specs => [...], backlog => 2048, reuseport => 0,
#     hold => 0, addresses_given => 0, log => sub ($level, $msg) { ... });
#   $l->open;                          # dies with a one-line message
#   $l->watch($loop, sub ($listener) { $l->accept($listener, 64, sub ($fh, $listener, $info) { ... }) });
#
# A listener is {fh, tcp, host, port} or {fh, tcp => 0, path}, with inherited =>
# 'systemd' or 'upgrade' when it was passed to this process.

# Where to listen: listen => [spec, ...], socket => PATH, and host/port (used when
# given, or when nothing else is). A spec is a string ('HOST:PORT', '[V6]:PORT',
# 'PORT', 'unix:PATH', a path starting with / or .) or upstream's hash ({host, port}
# or {socket, socket_mode}).
# (PAGI::Server::Config calls it on the options: listen, socket, socket_mode, host,
# port, and hostport: whether host or port was given.)
sub parse_specs (%o) {
  my @specs;
  my $given = $o{listen};
  Carp::croak("PAGI::Server->new: 'listen' must be a non-empty arrayref (or one address)")
    if ref $given eq 'ARRAY' && !@$given;
  my @listen = ref $given eq 'ARRAY' ? @$given : grep { defined } $given;
  my $mode = _socket_mode($o{socket_mode});
  my $host = $o{host};
  for my $l (@listen) {
    Carp::croak('PAGI::Server->new: Each listen spec must be a hashref ({host, port} or {socket}) or a string')
      if ref $l && ref $l ne 'HASH' || !defined $l;
    if (ref $l eq 'HASH') {
      my @bad = sort grep { !/\A(?:host|port|socket|socket_mode)\z/ } keys %$l;
      Carp::croak("PAGI::Server->new: unknown key(s) in a listen spec: @bad") if @bad;
      if (defined $l->{socket}) {
        for my $tcp (qw(host port)) {
          Carp::croak("PAGI::Server->new: Cannot specify both 'socket' and '$tcp' in a listen spec")
            if defined $l->{$tcp};
        }
        push @specs, {path => $l->{socket}, mode => _socket_mode($l->{socket_mode}) // $mode};
        next;
      }
      Carp::croak("PAGI::Server->new: TCP listen spec requires both 'host' and 'port'")
        unless defined $l->{host} && defined $l->{port};
      Carp::croak("PAGI::Server->new: a listen spec's port must be a number, not '$l->{port}'")
        unless $l->{port} =~ /\A[0-9]+\z/;
      push @specs, {host => $l->{host}, port => $l->{port}};
      next;
    }
    if ($l =~ m{\Aunix:(.+)\z} || $l =~ m{\A([/.].*)\z}) { push @specs, {path => $1, mode => $mode}; next }
    my ($h, $p) = $l =~ /\A\[([^\]]+)\]:([0-9]+)\z/ ? ($1, $2)
      : $l =~ /\A([^:]*):([0-9]+)\z/ ? ($1, $2)
      : $l =~ /\A([0-9]+)\z/ ? ($host, $1)
      : $l !~ /:/ ? (undef, undef)
      : Carp::croak("PAGI::Server->new: cannot parse listen address '$l' (HOST:PORT, [IPv6]:PORT, PORT or a socket path)");
    # A bare name (no colon, not a number) is a Unix socket path, as upstream reads it
    if (!defined $p) { push @specs, {path => $l, mode => $mode}; next }
    push @specs, {host => length $h ? $h : $host, port => $p};
  }
  push @specs, {path => $o{socket}, mode => $mode} if defined $o{socket};
  unshift @specs, {host => $host, port => $o{port}, given => $o{hostport} ? 1 : 0}
    if !@specs || $o{hostport};
  return \@specs;
}

# socket_mode: a number (0660) or an octal string ('0660')
sub _socket_mode ($m) {
  return undef unless defined $m;
  return oct $m if $m =~ /\A0[0-7]{3}\z/;
  return $m if $m =~ /\A[0-9]+\z/ && $m <= 07777;
  Carp::croak("PAGI::Server->new: socket_mode must be a file mode such as 0660, not '$m'");
}

sub new ($class, %arg) {
  return bless {%arg, sockets => [], unlink => []}, $class;
}

sub sockets ($self) { $self->{sockets} }
sub is_open ($self) { $self->{open} ? 1 : 0 }

# The listen specs in effect: the ones given, or, for inherited sockets, theirs
sub specs ($self) { $self->{specs} }

# The previous server of a USR2 upgrade ({ready => pipe, old_pid}), while this one
# is not serving yet; taken once
sub take_upgrade ($self) { delete $self->{upgrade} }
sub upgrade ($self) { $self->{upgrade} }
sub is_upgrade ($self) { $self->{upgrade} ? 1 : 0 }

# The first TCP listener's bound port (undef without one)
sub port ($self) {
  my ($tcp) = grep { $_->{tcp} } @{$self->{sockets}};
  return $tcp ? $tcp->{port} : undef;
}

# Upstream's description: {type => 'tcp', host, port} or {type => 'unix', path,
# socket_mode} per spec (the bound port once listening)
sub describe ($self) {
  my @bound = @{$self->{sockets}};
  my $i = 0;
  return [map {
    my $l = $bound[$i++];
    defined $_->{path} ? {type => 'unix', path => $_->{path}, socket_mode => $_->{mode}}
      : {type => 'tcp', host => $_->{host}, port => $l && $l->{tcp} ? $l->{port} : $_->{port}}
  } @{$self->{specs}}];
}

sub socket_path ($self) {
  my ($unix) = grep { defined $_->{path} } @{$self->{specs}};
  return $unix ? $unix->{path} : undef;
}

# Binds every spec (or takes the sockets passed to this process); once
sub open ($self) {
  return if $self->{open};
  if (my $got = PAGI::Server::Handoff::take_listen_fds()) { return $self->_adopt($got) }
  my @l;
  my $ok = eval {
    for my $spec (@{$self->{specs}}) {
      push @l, defined $spec->{path} ? $self->_bind_unix($spec) : $self->_bind_tcp($spec, $self->{hold});
    }
    1;
  };
  if (!$ok) {
    my $err = $@;
    CORE::close $_->{fh} for @l;
    $self->unlink_files;
    die $err;
  }
  @$self{qw(sockets open)} = (\@l, 1);
}

# Sockets passed by systemd (socket activation) or by the server this one replaces
# (USR2): served instead of binding; the specs describe them from now on
sub _adopt ($self, $got) {
  my $upgrade = $got->{ready} ? 1 : 0;
  my @l = map { PAGI::Server::Handoff::adopt($_, $upgrade) } @{$got->{fds}};
  if ($upgrade) {
    $self->{upgrade} = {ready => $got->{ready}, old_pid => $got->{old_pid}};
    # Unix socket files are this process's to remove at exit now
    push @{$self->{unlink}}, map { [$_->{path}, $$] } grep { !$_->{tcp} && $_->{path} =~ m{\A/} } @l;
  }
  else {
    $self->{log}->(info => 'socket activation: serving the ' . @l . ' socket(s) systemd passed'
      . ($self->{addresses_given} ? ' (not the addresses given with --host/--port/--listen/--socket)' : ''));
    $self->{log}->(warn => 'reuseport is not used with sockets from systemd (set ReusePort= in the .socket unit)')
      if $self->{reuseport};
  }
  $self->{specs} = [map { $_->{tcp} ? {host => $_->{host}, port => $_->{port}} : {path => $_->{path}} } @l];
  @$self{qw(sockets open)} = (\@l, 1);
}

# reuseport: with workers, each worker listens on a socket of its own (SO_REUSEPORT:
# the kernel spreads new connections over them); the master only binds its socket,
# without listening ($hold), to hold the address for the workers it starts later
sub _bind_tcp ($self, $spec, $hold = 0) {
  # Not Blocking => 0 here: IO::Socket::IP then returns an unbound socket instead
  # of failing when the address is in use (and accept() on it fails forever)
  my $sock = IO::Socket::IP->new(
    LocalHost => $spec->{host},
    LocalPort => $spec->{port},
    Type      => SOCK_STREAM,
    ($hold ? () : (Listen => $self->{backlog})),
    ReuseAddr => 1,
    ($self->{reuseport} ? (ReusePort => 1) : ()),
  ) or die "PAGI::Server: cannot listen on $spec->{host}:$spec->{port}: $@\n";
  $sock->blocking(0);
  return {fh => $sock, tcp => 1, host => $spec->{host}, port => $sock->sockport};
}

# In a worker of a reuseport server: its own listening sockets replace the master's
sub own_sockets ($self) {
  for my $l (@{$self->{sockets}}) {
    next unless $l->{tcp} && ($l->{inherited} // '') ne 'systemd';
    my $own = $self->_bind_tcp({host => $l->{host}, port => $l->{port}});
    CORE::close $l->{fh};
    $l->{fh} = $own->{fh};
  }
}

sub _bind_unix ($self, $spec) {
  require IO::Socket::UNIX;
  my $path = $spec->{path};
  if (-S $path) {
    # A socket file left by a server that died is removed; a live one is an error
    die "PAGI::Server: cannot listen on unix:$path: another server is listening there\n"
      if IO::Socket::UNIX->new(Peer => $path, Type => SOCK_STREAM);
    unlink $path;
  }
  elsif (-e $path) { die "PAGI::Server: cannot listen on unix:$path: the file exists and is not a socket\n" }
  # socket_mode: created owner-only, then given its mode (never more open in between)
  my $mode = $spec->{mode};
  my $umask = defined $mode ? umask(0177) : undef;
  my $sock = IO::Socket::UNIX->new(Local => $path, Type => SOCK_STREAM, Listen => $self->{backlog});
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

# ---- accepting -------------------------------------------------------------------

# Watches every listening socket: $on_ready->($listener) when one has connections
sub watch ($self, $loop, $on_ready) {
  @$self{qw(loop on_ready)} = ($loop, $on_ready);
  $self->_watch;
}

sub _watch ($self) {
  # (the codec, whose accept_socket accepts, loads once the backend is chosen: the
  # command line's --backend is read after this module is)
  require PAGI::Server::Protocol::HTTP1;
  my ($loop, $on_ready) = @$self{qw(loop on_ready)};
  for my $l (@{$self->{sockets}}) {
    $l->{watched} = 1;
    $loop->watch_io(handle => $l->{fh}, on_read_ready => sub { $on_ready->($l) });
  }
}

sub unwatch ($self) {
  my $loop = $self->{loop} or return;
  for my $l (@{$self->{sockets}}) {
    $loop->unwatch_io(handle => $l->{fh}, on_read_ready => 1) if delete $l->{watched};
  }
}

# Accepts up to $batch connections from $listener: each socket comes non-blocking
# (TCP: no Nagle delay) from the codec's accept_socket, and is given to
# $on_socket->($fh, $listener, $info), $info the connection's ends in connection_info's
# shape ([client host, client port, server host, server port]; a Unix socket's client
# undef): the peer as accept returned it, the local end the listener's own unless it
# listens on a wildcard address (then the socket's, which accept_socket reads)
sub accept ($self, $listener, $batch, $on_socket) {
  my ($lfh, $tcp) = @$listener{qw(fh tcp)};
  my $local = $listener->{local} //= _local_end($listener);
  for (1 .. $batch) {
    my ($fh, @ends) = PAGI::Server::Protocol::HTTP1::accept_socket($lfh, $tcp, !@$local);
    if (!$fh) {
      last if $! == EAGAIN || $! == EWOULDBLOCK;
      next if $! == EINTR || $! == ECONNABORTED;
      return $self->_pause("$!") if $! == EMFILE || $! == ENFILE || $! == ENOBUFS || $! == ENOMEM;
      $self->{log}->(error => "accept failed: $!");
      last;
    }
    $on_socket->($fh, $listener, @$local ? [@ends, @$local] : \@ends);
  }
}

# A listener's own address as its connections' local end ([host, port], a Unix
# socket's [path, undef]), or [] when it has none of its own (a wildcard address)
sub _local_end ($listener) {
  my $name = getsockname($listener->{fh}) // return [];
  my $family = Socket::sockaddr_family($name);
  if ($family == Socket::AF_UNIX()) { return [eval { Socket::unpack_sockaddr_un($name) } // '', undef] }
  my ($port, $ip) = $family == Socket::AF_INET6() ? Socket::unpack_sockaddr_in6($name) : Socket::unpack_sockaddr_in($name);
  my $host = Socket::inet_ntop($family, $ip);
  return [] if $host eq '0.0.0.0' || $host eq '::';
  $host =~ s/\A::ffff:(?=[0-9]+\.)//i;
  return [$host, $port];
}

# Out of file descriptors (or memory): the pending connection stays in the backlog
# and the listener stays readable, so retrying at once would spin (and flood the
# log). Stop watching the listeners for a moment instead, while the connections
# already open are served; one warning a second at most, however many pauses.
use constant {ACCEPT_PAUSE => 0.5, ACCEPT_LOG_EVERY => 1};

sub _pause ($self, $why) {
  return if $self->{paused};
  $self->{paused} = 1;
  my $now = Time::HiRes::time();
  my $n = ++$self->{failures};
  if ($now - ($self->{logged_at} // 0) >= ACCEPT_LOG_EVERY) {
    $self->{log}->(warn => "accept failed: $why" . ($n > 1 ? " ($n times since the last such line)" : '')
      . '; serving the open connections, accepting again every ' . ACCEPT_PAUSE . ' s');
    @$self{qw(logged_at failures)} = ($now, 0);
  }
  $self->unwatch;
  weaken(my $weak = $self);
  $self->{loop}->watch_time(after => ACCEPT_PAUSE, code => sub {
    return unless $weak && $weak->{paused};
    $weak->{paused} = 0;
    $weak->_watch if $weak->{open};
  });
}

# ---- closing -----------------------------------------------------------------------

# Stops accepting and closes the sockets (in a worker, only its copies: the master
# keeps them for the others)
sub close ($self) {
  $self->unwatch;
  CORE::close $_->{fh} for @{$self->{sockets}};
  @$self{qw(sockets open paused)} = ([], 0, 0);
}

# Removes the Unix socket files this process made
sub unlink_files ($self) {
  for (@{$self->{unlink}}) { unlink $_->[0] if $_->[1] == $$ }
}

1;

=head1 NAME

PAGI::Server::Listeners - the listening sockets of a PAGI::Server

=head1 DESCRIPTION

Internal. Binds the listen specs (TCP and Unix sockets; C<socket_mode>; a stale
socket file replaced, a live one refused), or serves the sockets passed to the
process (systemd socket activation, a USR2 upgrade: see L<PAGI::Server::Handoff>);
accepts in batches, pausing for half a second when out of descriptors (one log line
a second at most); closes them and removes the socket files it made. With
C<reuseport> and workers, the master holds the address bound without listening
(C<hold>) and each worker listens on its own socket (C<own_sockets>).

=cut
