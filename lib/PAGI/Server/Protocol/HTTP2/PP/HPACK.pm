package PAGI::Server::Protocol::HTTP2::PP::HPACK;
use strict;
use warnings;
use Protocol::HTTP2::StaticTable qw(@stable);
use Protocol::HTTP2::Huffman qw(huffman_decode huffman_encode);

our $VERSION = '0.001';

# The HPACK decoder of one connection (RFC 7541): its dynamic table and the peer's
# header blocks read against it. It owns its state; the session calls decode.
#
#   my $hpack = PAGI::Server::Protocol::HTTP2::PP::HPACK->new;
#   my $fields = $hpack->decode($block);    # [[name, value], ...], or undef

use constant {
  TABLE_SIZE => 4096,     # SETTINGS_HEADER_TABLE_SIZE: we never send another, so a larger size update is an error
  MAX_FIELD  => 65536,    # nghttp2's NGHTTP2_HD_MAX_NV: a longer name or value is a compression error
};

sub new { return bless {table => [], size => 0, max => TABLE_SIZE}, $_[0] }

# The fields of a header block, or undef (a compression error). The list is what the
# block holds; the limits (max_header_list_size, max_headers) are applied by the caller
# as it stores them, so a block that decompresses huge costs time, not memory: it is
# bounded by the frame size and the CONTINUATION limit.
sub decode {
  my ($self, $buf) = @_;
  my ($pos, @out, $fields) = (0);
  while ($pos < length $buf) {
    my $c = ord substr $buf, $pos, 1;
    if ($c & 0x80) {
      my $e = $self->_index(_int($buf, \$pos, 7) // return undef) // return undef;
      push @out, [@$e];
    }
    elsif (($c & 0xe0) == 0x20) {
      # a dynamic table size update: only before the first field
      return undef if $fields;
      my $size = _int($buf, \$pos, 5) // return undef;
      return undef if $size > TABLE_SIZE;
      $self->{max} = $size;
      $self->_evict(0);
      next;
    }
    else {
      my $bits = ($c & 0xc0) == 0x40 ? 6 : 4;
      my $i = _int($buf, \$pos, $bits) // return undef;
      my $name;
      if ($i) { $name = ($self->_index($i) // return undef)->[0] }
      else    { $name = _str($buf, \$pos) // return undef }
      my $value = _str($buf, \$pos) // return undef;
      $self->_add($name, $value) if $bits == 6;
      push @out, [$name, $value];
    }
    $fields = 1;
  }
  return \@out;
}

# An integer with an $n-bit prefix at $$pos; undef when malformed
sub _int {
  my ($buf, $pos, $n) = @_;
  return undef if $$pos >= length $buf;
  my $max = (1 << $n) - 1;
  my $v = ord(substr $buf, $$pos++, 1) & $max;
  return $v if $v < $max;
  my $shift = 0;
  while (1) {
    return undef if $$pos >= length $buf || $shift > 28;
    my $b = ord substr $buf, $$pos++, 1;
    $v += ($b & 0x7f) << $shift;
    $shift += 7;
    return $v if $b < 0x80;
  }
}

# A string literal at $$pos; undef when malformed (bad Huffman code, too long)
sub _str {
  my ($buf, $pos) = @_;
  return undef if $$pos >= length $buf;
  my $huff = ord(substr $buf, $$pos, 1) & 0x80;
  my $len = _int($buf, $pos, 7);
  return undef if !defined $len || $len > length($buf) - $$pos;
  my $s = substr($buf, $$pos, $len);
  $$pos += $len;
  if ($huff) {
    # A valid Huffman string is the only encoding of what it decodes to
    my $d = huffman_decode($s);
    return undef if huffman_encode($d) ne $s;
    $s = $d;
  }
  return undef if length $s > MAX_FIELD;
  return $s;
}

# Entry $i of the static table, then of the dynamic one; undef past them
sub _index {
  my ($self, $i) = @_;
  return undef if $i == 0;
  return $stable[$i - 1] if $i <= @stable;
  return $self->{table}[$i - @stable - 1];
}

# A field added to the dynamic table (its oldest entries evicted to make room; one
# larger than the table empties it and is not added)
sub _add {
  my ($self, $name, $value) = @_;
  my $size = length($name) + length($value) + 32;
  $self->_evict($size);
  return if $size > $self->{max};
  unshift @{$self->{table}}, [$name, $value];
  $self->{size} += $size;
  return;
}

# The oldest entries evicted until $room more bytes fit (or the table is empty)
sub _evict {
  my ($self, $room) = @_;
  while (@{$self->{table}} && $self->{size} + $room > $self->{max}) {
    my $e = pop @{$self->{table}};
    $self->{size} -= 32 + length($e->[0]) + length($e->[1]);
  }
  return;
}

1;

=head1 NAME

PAGI::Server::Protocol::HTTP2::PP::HPACK - the pure-Perl HTTP/2 session's HPACK decoder

=head1 DESCRIPTION

Internal to L<PAGI::Server::Protocol::HTTP2::PP>. One object per connection: the
dynamic table (RFC 7541 2.3) and C<decode($block)>, which reads a whole header block
against it and returns its fields (C<[[name, value], ...]>), or undef for a
compression error: a bad index, integer or Huffman code, a size update not first in
the block or over our 4096-byte table, a name or value longer than 64 KiB (as
nghttp2). The static table and the Huffman code are Protocol::HTTP2's. Responses are
encoded with Protocol::HTTP2's encoder (L<PAGI::Server::Protocol::HTTP2::PP::Output>
keeps its context).

=cut
