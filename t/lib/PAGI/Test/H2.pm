package PAGI::Test::H2;
use v5.32;
use warnings;
use experimental 'signatures';
use Exporter 'import';
use Protocol::HTTP2::HeaderCompression qw(headers_encode headers_decode);

# HTTP/2 bytes for the codec tests (t/11, t/12, t/33), built by hand so that bad ones can
# be made too, and the server's output read back (frames, HPACK through Protocol::HTTP2's
# decoder, not ours).
#
#   my $c = PAGI::Test::H2->new;                 # a client: its own HPACK contexts
#   my $bytes = hello() . $c->headers(1, [get('/')], END_STREAM);
#   my @frames = $c->read($output);              # [type, flags, id, what]

our @EXPORT_OK = qw(frame settings hello get post literal_block
  DATA HEADERS PRIORITY RST_STREAM SETTINGS PUSH_PROMISE PING GOAWAY WINDOW_UPDATE CONTINUATION
  END_STREAM ACK END_HEADERS PADDED PRIORITY_FLAG PREFACE);

use constant {
  DATA => 0, HEADERS => 1, PRIORITY => 2, RST_STREAM => 3, SETTINGS => 4, PUSH_PROMISE => 5,
  PING => 6, GOAWAY => 7, WINDOW_UPDATE => 8, CONTINUATION => 9,
  END_STREAM => 1, ACK => 1, END_HEADERS => 4, PADDED => 8, PRIORITY_FLAG => 0x20,
  PREFACE => "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
};

my @TYPE = qw(DATA HEADERS PRIORITY RST_STREAM SETTINGS PUSH_PROMISE PING GOAWAY WINDOW_UPDATE CONTINUATION);

sub frame ($type, $flags, $id, $payload = '') {
  return pack('NCN', (length($payload) << 8) | $type, $flags, $id) . $payload;
}

sub settings (@pairs) {
  my $p = '';
  while (my ($k, $v) = splice @pairs, 0, 2) { $p .= pack 'nN', $k, $v }
  return frame(SETTINGS, 0, 0, $p);
}

# The client preface and an empty SETTINGS
sub hello (@pairs) { PREFACE . settings(@pairs) }

sub get ($path, @more) { (':method' => 'GET', ':scheme' => 'https', ':authority' => 'example.com', ':path' => $path, @more) }
sub post ($path, @more) { (':method' => 'POST', ':scheme' => 'http', ':authority' => 'h', ':path' => $path, @more) }

# A header block of literal fields without indexing or Huffman (what hand-made bad
# requests use: every byte is the field's own)
sub literal_block (@fields) {
  my $out = '';
  while (my ($n, $v) = splice @fields, 0, 2) {
    $out .= "\x00" . _len($n) . $n . _len($v) . $v;
  }
  return $out;
}

sub _len ($s) {
  my $n = length $s;
  return chr $n if $n < 127;
  my $out = chr 127;
  $n -= 127;
  while ($n >= 128) { $out .= chr(($n & 0x7f) | 0x80); $n >>= 7 }
  return $out . chr $n;
}

sub new ($class) {
  return bless {
    enc => {header_table => [], ht_size => 0, max_ht_size => 4096, settings => {1 => 4096}},
    dec => {header_table => [], ht_size => 0, max_ht_size => 4096, settings => {1 => 4096}, emitted_headers => []},
    block => undef,
  }, $class;
}

# A header block of these fields (HPACK with indexing, Protocol::HTTP2's encoder)
sub block ($self, @fields) { headers_encode($self->{enc}, \@fields) }

sub headers ($self, $id, $fields, $flags = 0) {
  return frame(HEADERS, END_HEADERS | $flags, $id, $self->block(@$fields));
}

# The frames of the server's output: [TYPE, flags, id, what], what being the decoded
# fields (HEADERS with its CONTINUATIONs, the date's value as DATE), the payload
# (DATA, PING), the settings pairs, the increment, the error code, [last id, code]
# (GOAWAY, its debug data left out). A frame cut at the end waits for the next call.
sub read ($self, $bytes) {
  $bytes = delete($self->{rest}) . $bytes if defined $self->{rest};
  my @out;
  while (length($bytes) >= 9) {
    my ($lt, $flags, $id) = unpack 'NCN', $bytes;
    my ($len, $type) = ($lt >> 8, $lt & 0xff);
    last if length($bytes) < 9 + $len;
    my $p = substr($bytes, 9, $len);
    substr($bytes, 0, 9 + $len, '');
    $id &= 0x7fffffff;
    if ($type == HEADERS || $type == CONTINUATION) {
      if ($type == HEADERS) { $self->{block} = [$flags, $id, $p] }
      else                  { $self->{block}[2] .= $p }
      next unless $flags & END_HEADERS;
      my ($f, $i, $b) = @{delete $self->{block}};
      push @out, ['HEADERS', $f & END_STREAM, $i, $self->_decode($b)];
      next;
    }
    my $what = $type == SETTINGS ? [unpack '(nN)*', $p]
      : $type == WINDOW_UPDATE || $type == RST_STREAM ? unpack('N', $p)
      : $type == GOAWAY ? [unpack 'NN', $p]
      : $p;
    push @out, [$TYPE[$type] // "TYPE$type", $flags, $id, $what];
  }
  # a frame cut by output's limit: the rest comes with the next output
  $self->{rest} = $bytes if length $bytes;
  return @out;
}

{
  package PAGI::Test::H2::Decoder;
  sub decode_context { $_[0]{ctx} }
  sub error { $_[0]{failed} = 1; 1 }
  sub stream_error { $_[0]{failed} = 1; 1 }
}

sub _decode ($self, $block) {
  my $con = bless {ctx => $self->{dec}}, 'PAGI::Test::H2::Decoder';
  $self->{dec}{emitted_headers} = [];
  my $ok = headers_decode($con, \$block, 0, length $block, 0);
  die "PAGI::Test::H2::read: the server's header block does not decode\n" if !defined $ok || $con->{failed};
  my @h = @{$self->{dec}{emitted_headers}};
  my @pairs;
  while (my ($n, $v) = splice @h, 0, 2) { push @pairs, [$n, $n eq 'date' ? 'DATE' : $v] }
  return \@pairs;
}

1;
