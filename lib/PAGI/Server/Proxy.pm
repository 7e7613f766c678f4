package PAGI::Server::Proxy;
use strict;
use warnings;
use experimental 'signatures';
use feature 'bitwise';
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use Socket qw(AF_INET AF_INET6 MSG_PEEK inet_pton);
use PAGI::Server::Protocol::PROXY;

our $VERSION = '0.001';

# A server behind proxies and load balancers: the addresses it trusts
# (forwarded_allow_ips), the forwarded headers of their requests (proxy_headers) and
# the PROXY protocol header of their connections (proxy_protocol). Three pieces the
# server and its connections call; none holds state beyond what it is given.

# ---- the trusted addresses ---------------------------------------------------------

# forwarded_allow_ips as a set: a list (a comma-separated string or an array) of IP
# addresses, CIDR networks, `unix` (peers on Unix sockets) and `*` (everything).
# Returns ($set, undef) or (undef, $error). An IPv4-mapped IPv6 address
# (::ffff:a.b.c.d, how a dual-stack socket sees an IPv4 peer) is its IPv4 address,
# in the list and in a peer.
sub trusted_set ($spec) {
  my @items = ref $spec eq 'ARRAY' ? @$spec : defined $spec && !ref $spec ? split(/,/, $spec) : ();
  return (undef, 'must be a list of IP addresses and networks (a comma-separated string or an array)')
    if ref $spec && ref $spec ne 'ARRAY' || !defined $spec;
  my $set = {all => 0, unix => 0, nets => []};
  for my $item (@items) {
    $item = '' unless defined $item;
    $item =~ s/\A\s+|\s+\z//g;
    next unless length $item;
    if ($item eq '*') { $set->{all} = 1; next }
    if (lc $item eq 'unix') { $set->{unix} = 1; next }
    my ($addr, $bits) = $item =~ m{\A([^/]+)(?:/([0-9]{1,3}))?\z} or return (undef, "'$item' is not an address or network");
    my $packed = _pack($addr) // return (undef, "'$item' is not an IP address or network");
    my $max = 8 * length $packed;
    # (a prefix of a mapped address counts its IPv4 bits: ::ffff:10.0.0.0/104 is 10.0.0.0/8)
    $bits -= 96 if defined $bits && $max == 32 && $addr =~ /:/;
    $bits //= $max;
    return (undef, "'$item': the prefix length must be 0 to $max") if $bits < 0 || $bits > $max;
    my $mask = pack "B$max", '1' x $bits;
    return (undef, "'$item' has bits set after its prefix (the network is " . _unpack($packed &. $mask) . "/$bits)")
      if ($packed &. $mask) ne $packed;
    push @{$set->{nets}}, [$mask, $packed];
  }
  return ($set, undef);
}

# Whether the set trusts a peer: its host (an address string), undef for a Unix socket
sub trusts ($set, $host) {
  return 1 if $set->{all};
  return $set->{unix} unless defined $host;
  my $packed = _pack($host) // return 0;
  for my $net (@{$set->{nets}}) {
    return 1 if length $packed == length $net->[0] && ($packed &. $net->[0]) eq $net->[1];
  }
  return 0;
}

# An address string packed (4 bytes for IPv4 and IPv4-mapped IPv6, else 16), or undef
sub _pack ($addr) {
  $addr =~ s/%[^%]*\z//;    # (an IPv6 zone)
  return inet_pton(AF_INET, $addr) if $addr =~ /\A[0-9]{1,3}(?:\.[0-9]{1,3}){3}\z/;
  return undef unless $addr =~ /:/;
  my $p = inet_pton(AF_INET6, $addr) // return undef;
  return substr($p, 0, 12) eq "\0" x 10 . "\xff\xff" ? substr($p, 12) : $p;
}

sub _unpack ($packed) { Socket::inet_ntop(length $packed == 4 ? AF_INET : AF_INET6, $packed) }

# ---- forwarded headers ---------------------------------------------------------------

# The request of a trusted peer: its forwarded headers set the scope's client and
# scheme (an http scope's: http or https; the WebSocket connection makes ws or wss of
# it). The rule (README "Behind a proxy: the client's address"):
# - client: X-Forwarded-For (all its fields, in order, as one list), walked from the
#   right past the addresses the set trusts: the first one it does not trust is the
#   client, and when it trusts them all, the left-most (uvicorn's rule; with `*`,
#   the left-most at once). Without X-Forwarded-For, the for= of the Forwarded
#   header's elements (RFC 7239), walked the same way. The chosen entry sets client
#   only when it is an IP address (a port with it, else 0): "unknown", an obfuscated
#   identifier or garbage leaves the client the peer's.
# - scheme: X-Forwarded-Proto; with several values, the one as far from the right as
#   the X-Forwarded-For walk went (the right-most without one; the left-most when it
#   has fewer). Without it, the proto= of the chosen Forwarded element. http, https,
#   ws, wss, in any case; anything else leaves the scheme alone.
sub forwarded ($set, $scope) {
  my ($xff, $xfp, $fwd);
  for my $h (@{$scope->{headers}}) {
    my $name = $h->[0];
    if ($name eq 'x-forwarded-for') { $xff = defined $xff ? "$xff,$h->[1]" : $h->[1] }
    elsif ($name eq 'x-forwarded-proto') { $xfp = defined $xfp ? "$xfp,$h->[1]" : $h->[1] }
    elsif ($name eq 'forwarded') { $fwd = defined $fwd ? "$fwd,$h->[1]" : $h->[1] }
  }
  return unless defined $xff || defined $xfp || defined $fwd;
  my ($client, $proto, $steps);
  if (defined $xff) {
    my @hops = grep { length } map { s/\A[ \t]+|[ \t]+\z//gr } split /,/, $xff;
    ($client, $steps) = _walk($set, \@hops) if @hops;
  }
  elsif (defined $fwd and my $elements = _parse_forwarded($fwd)) {
    my ($node, $i) = _walk($set, [map { $_->{for} // '' } @$elements]);
    ($client, $proto) = ($node, $elements->[$#$elements - $i]{proto});
  }
  if (defined $xfp) {
    my @values = grep { length } map { s/\A[ \t]+|[ \t]+\z//gr } split /,/, $xfp;
    $proto = @values ? $values[$#values - ($steps // 0) < 0 ? 0 : $#values - ($steps // 0)] : undef;
  }
  if (defined $client and my $addr = _address($client)) { $scope->{client} = $addr }
  if (defined $proto) {
    $proto = lc $proto;
    $scope->{scheme} = $proto eq 'https' || $proto eq 'wss' ? 'https' : 'http' if $proto =~ /\A(?:https?|wss?)\z/;
  }
}

# The entry chosen from the right and how many steps from the right it is
sub _walk ($set, $hops) {
  return ($hops->[0], $#$hops) if $set->{all};
  for my $i (0 .. $#$hops) {
    my $hop = $hops->[$#$hops - $i];
    my $addr = _address($hop);
    return ($hop, $i) unless $addr && trusts($set, $addr->[0]);
  }
  return ($hops->[0], $#$hops);
}

# A forwarded node as [HOST, PORT]: 192.0.2.1, 192.0.2.1:80, [2001:db8::1],
# [2001:db8::1]:80, 2001:db8::1 (X-Forwarded-For's bare IPv6), or undef when it is no
# IP address (unknown, _hidden, garbage). An obfuscated port (_abc) is 0.
sub _address ($node) {
  my ($host, $port);
  if ($node =~ /\A\[([0-9A-Fa-f:.]+)\](?::([0-9]{1,5}|_[A-Za-z0-9._-]+))?\z/) { ($host, $port) = ($1, $2) }
  elsif ($node =~ /\A([0-9.]+)(?::([0-9]{1,5}|_[A-Za-z0-9._-]+))?\z/) { ($host, $port) = ($1, $2) }
  elsif ($node =~ /\A[0-9A-Fa-f:.]+\z/ && $node =~ /:.*:/) { $host = $node }
  else { return undef }
  defined _pack($host) or return undef;
  $port = 0 unless defined $port && $port =~ /\A[0-9]+\z/ && $port <= 65535;
  return [$host, 0 + $port];
}

# RFC 7239's Forwarded: elements (comma-separated) of pairs (semicolon-separated)
# token=token or token="quoted string"; names case-insensitive; empty elements and
# pairs skipped. [{for, proto, pairs}, ...], or undef when the value does not parse (the
# header is then ignored)
my $TOKEN = qr/[!#\$%&'*+.^_`|~0-9A-Za-z-]+/;
sub _parse_forwarded ($value) {
  my @elements = ({});
  pos($value) = 0;
  while (pos($value) < length $value) {
    next if $value =~ /\G[ \t;]+/gc;
    if ($value =~ /\G,/gc) { push @elements, {}; next }
    $value =~ /\G($TOKEN)[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|($TOKEN))/gc or return undef;
    my ($name, $quoted, $token) = (lc $1, $2, $3);
    my $v = defined $quoted ? $quoted =~ s/\\(.)/$1/gr : $token;
    # (an element with no for= still counts: a proxy that names no client stops the walk)
    $elements[-1]{pairs}++;
    $elements[-1]{$name} //= $v if $name eq 'for' || $name eq 'proto';
  }
  @elements = grep { $_->{pairs} } @elements;
  return @elements ? \@elements : undef;
}

# ---- the PROXY protocol header ------------------------------------------------------

# The most the header's reader takes from the socket at once (a header is read in
# pieces this size; past its end nothing is read)
use constant PEEK => 4096;

# Reads the PROXY protocol header off an accepted socket before anything else reads
# it (TLS, HTTP, the HTTP/2 preface): it peeks at what arrived and takes only the
# header's bytes, so the rest stays in the socket for whoever reads next. Given loop,
# sock, peer (its address for log lines), log (sub ($level, $msg)), and like TLS's
# handshake: started->($hs) before the first read ($hs: {abort}; the server calls
# abort('timeout') at its deadline, abort() when it stops), ended->($hs) when it is
# over either way, done->($header) with parse_proxy's result once it is read. A bad
# header, one cut short or too late closes the socket with a log line; nothing is
# written to it (the peer is not speaking HTTP yet).
sub read_header (%arg) {
  my ($loop, $sock, $log, $peer) = @arg{qw(loop sock log peer)};
  my $hs = {};
  my $buf = '';
  my ($finish, $step);
  $finish = sub ($header, $level = undef, $why = undef) {
    return if $hs->{over}++;
    $loop->unwatch_io(handle => $sock, on_read_ready => 1) if $hs->{watched};
    undef $step;
    $arg{ended}->($hs);
    $hs->{abort} = sub { };    # (it held this sub, which holds $hs; a late call does nothing)
    return $arg{done}->($header) if $header;
    $log->($level, "$peer: $why; closed") if $level;
    close $sock;
  };
  $hs->{abort} = sub ($why = '') {
    $finish->(undef, $why eq 'timeout' ? (warn => 'no PROXY protocol header in time') : ());
  };
  $step = sub {
    my $got = recv($sock, my $peek, PEEK, MSG_PEEK);
    if (!defined $got) {
      return if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
      return $finish->(undef, debug => "reading the PROXY protocol header: $!");
    }
    if (!length $peek) {
      return $finish->(undef, length $buf ? (warn => 'connection closed inside its PROXY protocol header')
        : (debug => 'connection closed before its PROXY protocol header'));
    }
    my ($header, $consumed) = PAGI::Server::Protocol::PROXY::parse_proxy($buf . $peek);
    return $finish->(undef, warn => "invalid PROXY protocol header ($header->{error}: $header->{message})")
      if $header && $header->{error};
    # Complete: take its bytes; else every byte seen is the header's: take them all
    my $take = $header ? $consumed - length $buf : length $peek;
    my $n = sysread($sock, $buf, $take, length $buf);
    return $finish->(undef, debug => "reading the PROXY protocol header: $!") unless $n && $n == $take;
    return $finish->($header) if $header;
  };
  $arg{started}->($hs);
  # (it usually came with the connection: read it now, watch only when it has not)
  $step->();
  if ($step && !$hs->{watched}) {
    $hs->{watched} = 1;
    $loop->watch_io(handle => $sock, on_read_ready => sub { $step->() if $step });
  }
}

# The header as the connection's addresses, in connection_info's shape ([client host,
# client port, server host, server port], and whether the client came over TLS; a
# Unix socket's client is undef, its server [PATH, undef]), or undef when the
# socket's own stand (LOCAL, UNKNOWN, UNSPEC)
sub addresses ($header) {
  return undef if $header->{local};
  return [undef, undef, $header->{server}[0], undef, $header->{ssl}] if $header->{family} eq 'unix';
  return [@{$header->{client}}, @{$header->{server}}, $header->{ssl}];
}

1;

=head1 NAME

PAGI::Server::Proxy - behind proxies: trusted addresses, forwarded headers, the PROXY protocol

=head1 DESCRIPTION

Internal. C<trusted_set> and C<trusts>: the option C<forwarded_allow_ips> (addresses,
networks, C<unix>, C<*>). C<forwarded($set, $scope)>: with C<proxy_headers>, a trusted
peer's C<X-Forwarded-For>, C<X-Forwarded-Proto> and C<Forwarded> (RFC 7239) headers set
the scope's C<client> and C<scheme>; the connection calls it for each request of a
trusted peer, and nothing at all otherwise. C<read_header>: with C<proxy_protocol>, the
header (L<PAGI::Server::Protocol::PROXY>) is read off each accepted socket before TLS
or HTTP, and C<addresses> makes the connection's client and server of it.

The README's "Behind a proxy" sections give the rules and the reasons for the
defaults.

=cut
