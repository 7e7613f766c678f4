package PAGI::Server::Protocol::PROXY;
use strict;
use warnings;
use experimental 'signatures';
use Socket qw(AF_INET AF_INET6 inet_ntop inet_pton);
use PAGI::Server::Protocol::Errors;

our $VERSION = '0.001';

# The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2): the
# bytes a proxy or load balancer sends first on a connection, naming the client and
# the address it connected to. A pure function over bytes with the codecs' three-way
# return (doc/codec.md, "The PROXY protocol header"); it has one implementation, in
# Perl: it runs once per connection, not per request (doc/codec.md says why).
#
# parse_proxy($buf) reads the header at the start of $buf:
#   (undef, 0)                     need more bytes (every byte present belongs to it)
#   ($header, $consumed)           the header's $consumed bytes, with
#     {version => 1|2, local => 0|1, family => inet|inet6|unix|unspec,
#      client => [HOST, PORT], server => [HOST, PORT], ssl => 0|1}
#     local: the socket's own addresses stand (v2 LOCAL, v1 UNKNOWN, v2 UNSPEC;
#     client and server are then undef); unix: [PATH, undef]; ssl: v2's PP2_TYPE_SSL
#     says the client connected over TLS
#   ({error => KIND, message => TEXT}, 0)   not a valid header (the proxy rows of
#                                  errors.tsv); never dies on peer input

use constant {
  V1_MAX => 107,    # the longest v1 line, CRLF included
  V2_SIG => "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A",
  V1_SIG => 'PROXY ',
  PP2_TYPE_SSL   => 0x20,
  PP2_CLIENT_SSL => 0x01,
};

# v2's family and transport byte: what each accepted one carries (the address
# block's size; UNSPEC carries none)
my %V2_FAMILY = (0x00 => ['unspec', 0], 0x11 => ['inet', 12], 0x21 => ['inet6', 36], 0x31 => ['unix', 216]);

my $OCTET = qr/(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/;
my $PORT  = qr/(?:0|[1-9][0-9]{0,4})/;

sub _error ($kind) { return ({error => $kind, message => $PAGI::Server::Protocol::Errors::PROXY{$kind}[1]}, 0) }

sub parse_proxy ($buf) {
  my $have = length $buf;
  return (undef, 0) unless $have;
  if (substr($buf, 0, 1) eq 'P') {
    my $n = $have < 6 ? $have : 6;
    return _error('bad_signature') if substr($buf, 0, $n) ne substr(V1_SIG, 0, $n);
    return _v1($buf, $have);
  }
  my $n = $have < 12 ? $have : 12;
  return _error('bad_signature') if substr($buf, 0, $n) ne substr(V2_SIG, 0, $n);
  return (undef, 0) if $have < 16;
  return _v2($buf, $have);
}

# PROXY TCP4|TCP6 SRC DST SPORT DPORT CRLF, or PROXY UNKNOWN[ anything] CRLF, at most
# 107 bytes; single spaces, no other CR or LF
sub _v1 ($buf, $have) {
  my $lf = index($buf, "\n");
  if ($lf < 0 || $lf >= V1_MAX) {
    return _error('bad_line') if $have >= V1_MAX || $lf >= V1_MAX;
    # (a CR must be the line's last byte before its LF)
    my $cr = index($buf, "\r");
    return _error('bad_line') if $cr >= 0 && $cr < $have - 1;
    return (undef, 0);
  }
  my $line = substr($buf, 0, $lf + 1);
  my $consumed = $lf + 1;
  return ({version => 1, local => 1, family => 'unspec', client => undef, server => undef, ssl => 0}, $consumed)
    if $line =~ /\APROXY UNKNOWN(?: [^\r\n]*)?\r\n\z/;
  my ($proto, $src, $dst, $sport, $dport) = $line =~ /\APROXY (TCP4|TCP6) (\S+) (\S+) ([0-9]+) ([0-9]+)\r\n\z/
    or return _error('bad_line');
  for my $port ($sport, $dport) { return _error('bad_address') unless $port =~ /\A$PORT\z/ && $port <= 65535 }
  my @host;
  for my $addr ($src, $dst) {
    if ($proto eq 'TCP4') {
      return _error('bad_address') unless $addr =~ /\A$OCTET\.$OCTET\.$OCTET\.$OCTET\z/;
      push @host, inet_ntop(AF_INET, inet_pton(AF_INET, $addr));
    }
    else {
      return _error('bad_address') unless $addr =~ /\A[0-9A-Fa-f:.]+\z/;
      my $packed = inet_pton(AF_INET6, $addr) // return _error('bad_address');
      push @host, inet_ntop(AF_INET6, $packed);
    }
  }
  return ({version => 1, local => 0, family => $proto eq 'TCP4' ? 'inet' : 'inet6',
    client => [$host[0], 0 + $sport], server => [$host[1], 0 + $dport], ssl => 0}, $consumed);
}

# The 12-byte signature, version and command, family and transport, the length of the
# rest (network order), the address block, TLVs
sub _v2 ($buf, $have) {
  my ($ver_cmd, $fam, $len) = unpack 'x12 C C n', $buf;
  return _error('bad_version') if $ver_cmd >> 4 != 2 || ($ver_cmd & 0x0F) > 1;
  my $total = 16 + $len;
  # LOCAL (health checks, the proxy's own connections): the socket's addresses, the
  # block ignored, whatever its family
  my $local = ($ver_cmd & 0x0F) == 0;
  if (!$local) {
    my $family = $V2_FAMILY{$fam} or return _error('bad_family');
    return _error('bad_length') if $len < $family->[1];
  }
  return (undef, 0) if $have < $total;
  return ({version => 2, local => 1, family => 'unspec', client => undef, server => undef, ssl => 0}, $total)
    if $local || $fam == 0x00;
  my ($name, $size) = @{$V2_FAMILY{$fam}};
  my $block = substr($buf, 16, $size);
  my ($client, $server);
  if ($name eq 'inet' || $name eq 'inet6') {
    my ($af, $n) = $name eq 'inet' ? (AF_INET, 4) : (AF_INET6, 16);
    my ($src, $dst, $sport, $dport) = unpack "a$n a$n n n", $block;
    ($client, $server) = ([inet_ntop($af, $src), $sport], [inet_ntop($af, $dst), $dport]);
  }
  else {
    # (paths, NUL-padded to 108 bytes)
    my ($src, $dst) = map { s/\x00.*\z//sr } unpack 'a108 a108', $block;
    ($client, $server) = ([$src, undef], [$dst, undef]);
  }
  # TLVs: type, length (network order), value; each must fit in the header. Only
  # PP2_TYPE_SSL's client bit is read (the others are skipped; CRC32C not checked)
  my ($pos, $ssl) = (16 + $size, 0);
  while ($pos < $total) {
    return _error('bad_tlv') if $total - $pos < 3;
    my ($type, $vlen) = unpack "x$pos C n", $buf;
    return _error('bad_tlv') if $pos + 3 + $vlen > $total;
    if ($type == PP2_TYPE_SSL) {
      return _error('bad_tlv') if $vlen < 5;
      $ssl = (unpack("x$pos x3 C", $buf) & PP2_CLIENT_SSL) ? 1 : 0;
    }
    $pos += 3 + $vlen;
  }
  return ({version => 2, local => 0, family => $name, client => $client, server => $server, ssl => $ssl}, $total);
}

1;

=head1 NAME

PAGI::Server::Protocol::PROXY - the PROXY protocol header (versions 1 and 2)

=head1 SYNOPSIS

  use PAGI::Server::Protocol::PROXY;
  my ($header, $consumed) = PAGI::Server::Protocol::PROXY::parse_proxy($bytes);
  # (undef, 0): more bytes; {error, message}: not a valid header;
  # else $header->{client} = [HOST, PORT], $header->{server}, ...

=head1 DESCRIPTION

Internal. Reads the header a proxy sends first on a connection with HAProxy's PROXY
protocol (C<send-proxy>, C<send-proxy-v2>): a pure function over bytes, with the
codecs' three-way result; L<PAGI::Server::Proxy> reads the header off a socket with it
(option C<proxy_protocol>). F<doc/codec.md> ("The PROXY protocol header") gives the
grammar, the result, the error kinds and why this codec has one implementation.

=head1 SEE ALSO

L<https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>

=cut
