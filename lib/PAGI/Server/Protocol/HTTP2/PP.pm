package PAGI::Server::Protocol::HTTP2::PP;
use strict;
use warnings;
use Carp ();

our $VERSION = '0.001';

# The pure-Perl HTTP/2 session: Protocol::HTTP2's pieces (the HPACK static table, its
# Huffman code, its header encoder) under a session of our own that follows what the XS
# backend's nghttp2 1.68.1 does, rule for rule where doc/codec.md says so (its HTTP/2
# section lists where it does not). Protocol::HTTP2's own connection object is not used:
# it hands a request body over whole, and its stream rules are not nghttp2's.
our @FUNCTIONS = qw(new_session);

sub new_session {
  require PAGI::Server::Protocol::HTTP2;
  return PAGI::Server::Protocol::HTTP2::PP::Session->_new(PAGI::Server::Protocol::HTTP2::session_settings($_[0]));
}

package PAGI::Server::Protocol::HTTP2::PP::Session;
use strict;
use warnings;
use Carp ();
use Time::HiRes ();
use POSIX ();
use Protocol::HTTP2::StaticTable qw(@stable);
use Protocol::HTTP2::Huffman qw(huffman_decode huffman_encode);
use Protocol::HTTP2::HeaderCompression qw(headers_encode);
use PAGI::Server::Protocol::Errors;

use constant {
  DATA => 0, HEADERS => 1, PRIORITY => 2, RST_STREAM => 3, SETTINGS => 4, PUSH_PROMISE => 5,
  PING => 6, GOAWAY => 7, WINDOW_UPDATE => 8, CONTINUATION => 9,
  F_END_STREAM => 1, F_ACK => 1, F_END_HEADERS => 4, F_PADDED => 8, F_PRIORITY => 0x20,
  NO_ERROR => 0, PROTOCOL_ERROR => 1, INTERNAL_ERROR => 2, FLOW_CONTROL_ERROR => 3,
  STREAM_CLOSED => 5, FRAME_SIZE_ERROR => 6, REFUSED_STREAM => 7, COMPRESSION_ERROR => 9,
  ENHANCE_YOUR_CALM => 11,
  MAX_WINDOW => 2**31 - 1,
  PROBE_CAP => 65536,          # as src/h2.rs
  MAX_CONTINUATIONS => 8,      # nghttp2's default
  MAX_OUTBOUND_ACK => 1000,    # nghttp2's default
  MAX_SETTINGS => 32,          # nghttp2's default
  MAX_FIELD => 65536,          # nghttp2's NGHTTP2_HD_MAX_NV: a longer name or value is a compression error
  UNLIMITED => 2**32 - 1,
  DATA_PAYLOAD => 16384,       # nghttp2 frames DATA in at most 16 KiB
};

my $PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

# Byte classes of nghttp2's checks (nghttp2_helper.c, nghttp2_http.c)
my $NAME_OK      = qr/\A:?[!#\$%&'*+\-.^_`|~0-9a-z]+\z/;
my $VALUE_OK     = qr/\A[\t\x20-\x7e\x80-\xff]*\z/;
my $METHOD_OK    = qr/\A[!#\$%&'*+\-.^_`|~0-9A-Za-z]+\z/;
my $PATH_OK      = qr/\A[\x21-\x7e\x80-\xff]*\z/;
my $AUTHORITY_OK = qr/\A[!\$%&'()*+,\-.0-9:;=A-Z\[\]_a-z~]*\z/;
my $SCHEME_OK    = qr/\A[A-Za-z][A-Za-z0-9+\-.]*\z/;
my %FORBIDDEN    = map { $_ => 1 } qw(connection keep-alive proxy-connection transfer-encoding upgrade);

sub _new {
  my ($class, $s) = @_;
  require PAGI::Server::Protocol::HTTP1::PP;
  my $self = bless {
    s => $s,
    # The Server field of the response heads (the codec's, when the session is made)
    server => PAGI::Server::Protocol::HTTP1::PP::_server_value(),
    in => '', state => 'preface',
    events => [], urgent => [], reg => [], ready => [], out => '',
    streams => {}, last_recv => 0, last_proc => 0, incoming => 0,
    # Our settings as the peer has acknowledged them, and as submitted
    local => {window => 65535, frame => 16384, streams => UNLIMITED},
    pending_streams => $s->{max_concurrent_streams},
    remote => {window => 65535, frame => 16384, table => 4096},
    conn => {recv => 0, consumed => 0, local => 65535, remote => 65535, queued => 0},
    dtable => [], dsize => 0, dmax => 4096,
    enc => {header_table => [], ht_size => 0, max_ht_size => 4096, settings => {1 => 4096}},
    block => undef, acks => 0, conn_consume => 0, stream_consume => [],
    rst => {val => $s->{rst_rate_limit}[0], tstamp => 0}, rapid_reset => 0,
    goaway => 0, term => 0, term_sent => 0, goaway_sent => 0, goaway_recv => 0, error => undef,
    own_goaway => undef, notice => 0, dead => 0,
  }, $class;
  my @iv = ([3, $s->{max_concurrent_streams}], [4, $s->{initial_window_size}], [5, $s->{max_frame_size}],
    [6, $s->{max_header_list_size}]);
  push @iv, [2, 0] unless $s->{enable_push};
  push @iv, [8, 1] if $s->{enable_connect_protocol};
  $self->{settings_sent} = {map { @$_ } @iv};
  push @{$self->{urgent}}, [_frame(SETTINGS, 0, 0, join '', map { pack 'nN', @$_ } @iv), settings => 1];
  if (defined $s->{upgrade}) {
    my $payload = _base64url($s->{upgrade});
    return (undef, _err('bad_upgrade_settings')) unless defined $payload && length($payload) % 6 == 0;
    # The HTTP2-Settings are the client's first SETTINGS, taken as acknowledged
    return (undef, _err('bad_upgrade_settings')) if defined $self->_apply_settings($payload, 1);
    $self->{last_recv} = $self->{last_proc} = 1;
    $self->{incoming} = 1;
    $self->{streams}{1} = $self->_stream(1, shut_rd => 1, delivered => 1, head => $s->{upgrade_head});
  }
  $self->_pull(~0 >> 1, 0);
  return $self;
}

# {error => KIND, message => TEXT} of the h2 (or h2req) table
sub _err { return {error => $_[0], message => $PAGI::Server::Protocol::Errors::H2{$_[0]}[1]} }
sub _refusal { return {error => $_[0], message => $PAGI::Server::Protocol::Errors::H2REQ{$_[0]}[1]} }
sub _misuse { return PAGI::Server::Protocol::Errors::app_message(@_) }

sub _frame { my ($type, $flags, $id, $payload) = @_; return pack('NCN', (length($payload) << 8) | $type, $flags, $id) . $payload }

sub _base64url {
  my ($v) = @_;
  $v =~ s/=+\z//;
  return undef if $v =~ /[^A-Za-z0-9\-_]/ || length($v) % 4 == 1;
  $v =~ tr{-_}{+/};
  require MIME::Base64;
  return MIME::Base64::decode_base64($v);
}

sub _stream {
  my ($self, $id, %more) = @_;
  return {
    id => $id, shut_rd => 0, shut_wr => 0, closing => 0, delivered => 0, refused => 0,
    recv => 0, consumed => 0, local => $self->{local}{window}, remote => $self->{remote}{window},
    queued => 0, cl => -1, got => 0, headers_seen => 0,
    out => '', started => 0, head_sent => 0, ended => 0, trailers => undef, scheduled => 0,
    %more,
  };
}

# ---- reading --------------------------------------------------------------------------

sub feed {
  my ($self, $bytes) = @_;
  Carp::croak('PAGI::Server::Protocol::HTTP2::PP::Session::feed: the input must be bytes')
    if utf8::is_utf8($bytes) && !utf8::downgrade(my $copy = $bytes, 1);
  if (!$self->{dead} && !$self->{term} && !$self->_want_read_closed) {
    $self->{in} .= $bytes;
    $self->_read;
    if (!$self->{dead}) {
      $self->_update_consumed($self->{conn}, 0, $self->{conn_consume}) if $self->{conn_consume};
      $self->_update_consumed($_->[0], $_->[0]{id}, $_->[1]) for grep { !$_->[0]{gone} } @{$self->{stream_consume}};
    }
    $self->{conn_consume} = 0;
    $self->{stream_consume} = [];
    $self->_pull(PROBE_CAP, 1) if length($self->{out}) < PROBE_CAP;
  }
  return ($self->_take, $self->{error});
}

sub events { return $_[0]->_take }
sub error  { return $_[0]{error} }

sub _take { my $e = $_[0]{events}; $_[0]{events} = []; return $e }

# nghttp2_session_want_read is 0 (nothing more is read)
sub _want_read_closed {
  my ($self) = @_;
  return 1 if $self->{term_sent};
  return 0 if grep { !$_->{gone} } values %{$self->{streams}};
  return $self->{goaway_sent} || $self->{goaway_recv};
}

# A connection error found reading: GOAWAY with the last stream id processed, nothing
# more read
sub _terminate {
  my ($self, $code) = @_;
  return if $self->{term};
  $self->{term} = 1;
  push @{$self->{reg}}, [_frame(GOAWAY, 0, 0, pack('NN', $self->{last_proc}, $code)), goaway => $code, term => 1,
    last => $self->{last_proc}];
  $self->{in} = '';
  return;
}

# nghttp2 failed as a whole (a fatal error): a GOAWAY written here, nothing else
sub _die {
  my ($self, $kind) = @_;
  $self->{dead} = 1;
  $self->{error} //= _err($kind);
  $self->{out} .= _frame(GOAWAY, 0, 0, pack('NN', $self->{last_proc}, PAGI::Server::Protocol::HTTP2::error_code($kind)));
  $self->{in} = '';
  return;
}

sub _read {
  my ($self) = @_;
  if ($self->{state} eq 'preface') {
    my $n = length $self->{in};
    $n = 24 if $n > 24;
    return $self->_die('bad_preface') if substr($self->{in}, 0, $n) ne substr($PREFACE, 0, $n);
    return if $n < 24;
    substr($self->{in}, 0, 24, '');
    $self->{state} = 'first';
  }
  while (!$self->{term} && !$self->{dead}) {
    if ($self->{dframe}) {
      last unless $self->_data_body;
      next;
    }
    # a frame judged on its header waits for the rest of its payload
    if (my $f = $self->{cur}) {
      return if length($self->{in}) < $f->{left};
      delete $self->{cur};
      my $payload = substr($self->{in}, 0, $f->{left}, '');
      my $m = $f->{method} or next;    # unknown types are ignored
      $self->$m($f->{flags}, $f->{id}, $payload, $f);
      next;
    }
    # nghttp2 counts each time it waits for a CONTINUATION frame's header (each read
    # that ends inside that header counts again)
    if (my $b = $self->{block}) {
      return $self->_die('continuation_flood') if ++$b->{continuations} > MAX_CONTINUATIONS;
    }
    last if length($self->{in}) < 9;
    my ($lt, $flags, $id) = unpack 'NCN', $self->{in};
    my ($len, $type) = ($lt >> 8, $lt & 0xff);
    $id &= 0x7fffffff;
    # what nghttp2 judges on a frame's header, in its order
    if ($self->{state} eq 'first') {
      return $self->_terminate(PROTOCOL_ERROR) if $type != SETTINGS || $flags & F_ACK;
      $self->{state} = 'frames';
    }
    if (my $b = $self->{block}) {
      return $self->_terminate(PROTOCOL_ERROR) if $type != CONTINUATION || $id != $b->{id};
    }
    return $self->_terminate(FRAME_SIZE_ERROR) if $len > $self->{local}{frame};
    if ($type == DATA) {
      $self->_data_start($len, $flags, $id);
      next;
    }
    my $size_ok = $type == PRIORITY ? $len == 5
      : $type == RST_STREAM || $type == WINDOW_UPDATE ? $len == 4
      : $type == SETTINGS ? !($len % 6) && !($flags & F_ACK && $len)
      : $type == PING ? $len == 8
      : $type == GOAWAY ? $len >= 8
      : $type == HEADERS ? !(!($flags & F_PADDED) && $flags & F_PRIORITY && $len < 5)
      : $type == PUSH_PROMISE ? ($flags & F_PADDED || $len >= 4)
      : 1;
    return $self->_terminate(PROTOCOL_ERROR) if ($type == HEADERS || $type == PUSH_PROMISE) && $flags & F_PADDED && $len < 1;
    return $self->_terminate(FRAME_SIZE_ERROR) unless $size_ok;
    return $self->_terminate(PROTOCOL_ERROR) if $type == CONTINUATION && !$self->{block};
    if ($type == SETTINGS && !($flags & F_ACK)) {
      # nghttp2 refuses to queue more acknowledgements than this
      return $self->_die('flood') if $self->{acks} >= MAX_OUTBOUND_ACK;
      return $self->_terminate(ENHANCE_YOUR_CALM) if $len / 6 > MAX_SETTINGS;
    }
    my $f = {flags => $flags, id => $id, left => $len, method => $type == HEADERS ? '_headers'
      : $type == CONTINUATION ? '_continuation' : $type == SETTINGS ? '_settings' : $type == PING ? '_ping'
      : $type == RST_STREAM ? '_rst_stream' : $type == WINDOW_UPDATE ? '_window_update' : $type == GOAWAY ? '_goaway'
      : $type == PRIORITY ? '_priority' : undef};
    if ($type == PUSH_PROMISE) {
      # a client never pushes: judged once its promised stream id is here
      return if length($self->{in}) < 9 + 4 + ($flags & F_PADDED ? 1 : 0);
      return $self->_terminate(PROTOCOL_ERROR);
    }
    if ($type == HEADERS) {
      # its padding and priority fields are judged (and the stream) before its block
      my $fixed = ($flags & F_PADDED ? 1 : 0) + ($flags & F_PRIORITY ? 5 : 0);
      return if length($self->{in}) < 9 + $fixed;
      substr($self->{in}, 0, 9, '');
      my $fields = substr($self->{in}, 0, $fixed, '');
      $f->{left} = $len - $fixed;
      $self->_headers_start($f, $fields) or return;
      $self->{cur} = $f;
      next;
    }
    substr($self->{in}, 0, 9, '');
    $self->{cur} = $f;
  }
  return;
}

# A client stream id not seen yet (nghttp2's session_detect_idle_stream)
sub _idle { my ($self, $id) = @_; return $id % 2 == 1 ? $id > $self->{last_recv} : 0 }

sub _live { my ($self, $id) = @_; my $st = $self->{streams}{$id}; return $st && !$st->{gone} ? $st : undef }

# DATA: judged on its header, its payload taken as it arrives (as nghttp2 does: the
# windows are charged per chunk, and the chunks of one read make one event)
sub _data_start {
  my ($self, $len, $flags, $id) = @_;
  return $self->_terminate(PROTOCOL_ERROR) if $id == 0 || $self->_idle($id);
  my $st = $self->_live($id);
  return $self->_terminate(STREAM_CLOSED) if $st && $st->{shut_rd};
  substr($self->{in}, 0, 9, '');
  $self->{dframe} = {left => $len, flags => $flags, id => $id, st => ($st && !$st->{closing} ? $st : undef),
    pad => ($flags & F_PADDED ? undef : 0)};
  $self->_data_end if $len == 0 && !($flags & F_PADDED);
  return;
}

# Window accounting of $n bytes received; false after a flow-control error
sub _charge {
  my ($self, $w, $n) = @_;
  if ($w->{recv} > $w->{local} - $n || $w->{recv} > MAX_WINDOW - $n) {
    $self->_terminate(FLOW_CONTROL_ERROR);
    return 0;
  }
  $w->{recv} += $n;
  return 1;
}

sub _data_body {
  my ($self) = @_;
  my $fh = $self->{dframe};
  my $st = $fh->{st};
  my $conn = $self->{conn};
  if (!$st) {
    # an ignored stream: the connection window only, consumed at once
    my $n = length $self->{in} < $fh->{left} ? length $self->{in} : $fh->{left};
    substr($self->{in}, 0, $n, '');
    $fh->{left} -= $n;
    return 0 unless $self->_charge($conn, $n);
    $self->_update_consumed($conn, 0, $n);
    return $fh->{left} ? 0 : $self->_data_end;
  }
  if (!defined $fh->{pad}) {
    return 0 unless length $self->{in};
    my $pad = ord substr($self->{in}, 0, 1, '');
    $fh->{left}--;
    return 0 unless $self->_charge($conn, 1);
    $self->_update_consumed($conn, 0, 1);
    $self->_update_consumed($st, $st->{id}, 1) unless $st->{gone};
    return 0 unless $self->_charge($st, 1);
    return $self->_terminate(PROTOCOL_ERROR) if $pad > $fh->{left};
    $fh->{pad} = $pad;
  }
  my $n = length $self->{in} < $fh->{left} ? length $self->{in} : $fh->{left};
  if ($n > 0) {
    my $chunk = substr($self->{in}, 0, $n, '');
    $fh->{left} -= $n;
    return 0 unless $self->_charge($conn, $n) && $self->_charge($st, $n);
    # the data and the padding in this chunk
    my $data_n = $fh->{left} >= $fh->{pad} ? $n : $n - ($fh->{pad} - $fh->{left});
    $data_n = 0 if $data_n < 0;
    if (my $padding = $n - $data_n) {
      $self->_update_consumed($conn, 0, $padding);
      $self->_update_consumed($st, $st->{id}, $padding) unless $st->{gone};
    }
    if ($data_n) {
      $st->{got} += $data_n;
      return $self->_terminate(PROTOCOL_ERROR) if $st->{cl} != -1 && $st->{got} > $st->{cl};
      # the connection window is replenished at receipt (once the read is done, as
      # src/h2.rs does); a stream's once the app took it
      $self->{conn_consume} += $data_n;
      if (!$st->{delivered} || $st->{refused}) { push @{$self->{stream_consume}}, [$st, $data_n] }
      else {
        my $last = $self->{events}[-1];
        if ($last && $last->[0] eq 'data' && $last->[1] == $st->{id} && !$last->[3]) { $last->[2] .= substr($chunk, 0, $data_n) }
        else { push @{$self->{events}}, ['data', $st->{id}, substr($chunk, 0, $data_n), 0] }
      }
    }
  }
  return $fh->{left} ? 0 : $self->_data_end;
}

# A DATA frame's end: END_STREAM closes the stream's receiving side
sub _data_end {
  my ($self) = @_;
  my $fh = delete $self->{dframe};
  my $st = $fh->{st};
  return 1 unless $st && !$st->{gone} && $fh->{flags} & F_END_STREAM;
  return $self->_terminate(PROTOCOL_ERROR) if $st->{cl} != -1 && $st->{cl} != $st->{got};
  if ($st->{delivered} && !$st->{refused}) {
    my $last = $self->{events}[-1];
    if ($last && $last->[0] eq 'data' && $last->[1] == $st->{id} && !$last->[3]) { $last->[3] = 1 }
    else { push @{$self->{events}}, ['data', $st->{id}, '', 1] }
  }
  $self->_shut($st, 'rd');
  return 1;
}

# nghttp2's session_update_consumed_size with its WINDOW_UPDATE rule
sub _update_consumed {
  my ($self, $w, $id, $n) = @_;
  return $self->_terminate(FLOW_CONTROL_ERROR) if $w->{consumed} > MAX_WINDOW - $n;
  $w->{consumed} += $n;
  return if $w->{queued};
  my $size = $w->{consumed} < $w->{recv} ? $w->{consumed} : $w->{recv};
  if ($size > 0 && $size >= int($w->{local} / 2)) {
    $w->{queued} = 1;
    push @{$self->{reg}}, [_frame(WINDOW_UPDATE, 0, $id, pack 'N', $size), window => $w, ($id ? (st => $w) : ())];
    $w->{recv} -= $size;
    $w->{consumed} -= $size;
  }
  return;
}

# A HEADERS frame's padding, priority and stream, judged before its block (nghttp2's
# session_process_headers_frame); false after a connection error
sub _headers_start {
  my ($self, $f, $fixed) = @_;
  my ($flags, $id) = @$f{qw(flags id)};
  my $pad = 0;
  if ($flags & F_PADDED) {
    $pad = ord substr($fixed, 0, 1, '');
    my $left = $f->{left} + length $fixed;
    my $pri = $flags & F_PRIORITY ? 5 : 0;
    return $self->_terminate(PROTOCOL_ERROR) if $pad > $left || $pad + 1 + $pri > 1 + $left - $pad;
  }
  $f->{pad} = $pad;
  my $dep = $flags & F_PRIORITY ? unpack('N', $fixed) & 0x7fffffff : 0;
  return $self->_terminate(PROTOCOL_ERROR) if $id == 0;
  my $b = {id => $id, flags => $flags, buf => '', continuations => 0};
  my $st = $self->_live($id);
  if (!$st) {
    # a request
    if (!$self->_idle($id) || $id % 2 == 0) {
      return $self->_terminate(PROTOCOL_ERROR) if $id % 2 == 0;
      my $old = $self->{streams}{$id};
      return $self->_terminate(STREAM_CLOSED) if $old && $old->{shut_rd};
      $b->{ignore} = 1;
    }
    else {
      $self->{last_recv} = $id;
      if ($self->{local}{streams} <= $self->{incoming}) { return $self->_terminate(PROTOCOL_ERROR) }
      elsif ($self->{goaway_sent} || $self->{term}) { $b->{ignore} = 1 }
      elsif ($dep == $id) { return $self->_terminate(PROTOCOL_ERROR) }
      elsif ($self->{pending_streams} <= $self->{incoming}) {
        $b->{ignore} = 1;
        push @{$self->{events}}, ['error', $id, _err('refused_stream')];
        push @{$self->{reg}}, [_frame(RST_STREAM, 0, $id, pack 'N', REFUSED_STREAM)];
      }
      else {
        $st = $self->{streams}{$id} = $self->_stream($id);
        $self->{incoming}++;
        $self->{last_proc} = $id;
        $b->{request} = 1;
      }
    }
  }
  else {
    return $self->_terminate(STREAM_CLOSED) if $st->{shut_rd};
    $b->{ignore} = 1 if $st->{closing};
    $b->{trailer} = 1 unless $b->{ignore};
  }
  $b->{st} = $st;
  $f->{block} = $b;
  return 1;
}

# The rest of a HEADERS frame: its block (less the padding)
sub _headers {
  my ($self, $flags, $id, $payload, $f) = @_;
  substr($payload, -$f->{pad}, $f->{pad}, '') if $f->{pad};
  my $b = $f->{block};
  $b->{buf} = $payload;
  $self->{block} = $b;
  $self->_block_done if $flags & F_END_HEADERS;
  return;
}

sub _continuation {
  my ($self, $flags, $id, $payload) = @_;
  my $b = $self->{block} or return $self->_terminate(PROTOCOL_ERROR);
  $b->{buf} .= $payload;
  $self->_block_done if $flags & F_END_HEADERS;
  return;
}

# A whole header block: decoded (always, to keep the HPACK state), then judged
sub _block_done {
  my ($self) = @_;
  my $b = delete $self->{block};
  my $fields = $self->_hpack_decode($b->{buf});
  return $self->_terminate(COMPRESSION_ERROR) unless $fields;
  return if $b->{ignore};
  my $st = $b->{st};
  my $end = $b->{flags} & F_END_STREAM;
  my $trailer = $b->{trailer};
  # nghttp2's HTTP messaging, field by field, then for the whole block
  my %f;    # what was seen (nghttp2's http_flags)
  my $stored = {fields => [], count => 0, size => 0, over => 0};
  for my $nv (@$fields) {
    my ($name, $value) = @$nv;
    my $r = $self->_check_field($st, \%f, $name, $value, $trailer);
    return $self->_terminate(PROTOCOL_ERROR) if $r eq 'error';
    next if $r eq 'ignore';
    _store($stored, $name, $value, $self->{s});
  }
  if ($trailer) {
    return $self->_terminate(PROTOCOL_ERROR) unless $end;
  }
  else {
    my $ok;
    if (!$f{':protocol'} && $f{connect}) {
      $ok = !$f{':scheme'} && !$f{':path'} && $f{':authority'};
      $st->{cl} = -1;
    }
    else {
      $ok = $f{':method'} && $f{':scheme'} && $f{':path'} && ($f{':authority'} || $f{host})
        && (!$f{':protocol'} || ($f{connect} && $f{':authority'}))
        && (!$f{scheme_http} || $f{path_regular} || ($f{options} && $f{path_asterisk}));
    }
    return $self->_terminate(PROTOCOL_ERROR) unless $ok;
  }
  return $self->_terminate(PROTOCOL_ERROR) if $end && $st->{cl} != -1 && $st->{cl} != $st->{got};
  if ($trailer) {
    return if $st->{refused};
    if ($stored->{over}) {
      push @{$self->{events}}, ['error', $st->{id}, _err('trailers_too_large')];
      $self->reset($st->{id}, ENHANCE_YOUR_CALM);
    }
    else { push @{$self->{events}}, ['trailers', $st->{id}, $stored->{fields}] }
  }
  else {
    my $req = _request($stored);
    $st->{delivered} = 1;
    $st->{refused} = exists $req->{error} ? 1 : 0;
    push @{$self->{events}}, ['request', $st->{id}, $req, $end ? 1 : 0];
  }
  $self->_shut($st, 'rd') if $end;
  return;
}

# One field against nghttp2's rules (nghttp2_http_on_header): 'ok', 'ignore' (an invalid
# regular field: dropped) or 'error' (malformed: a connection error)
sub _check_field {
  my ($self, $st, $f, $name, $value, $trailer) = @_;
  my $pseudo = substr($name, 0, 1) eq ':';
  if ($name !~ $NAME_OK || $name eq ':') {
    return 'error' if $pseudo || $name =~ /[A-Z]/;
    $f->{regular} = 1;
    return 'ignore';
  }
  my $ok = $name eq ':method' ? $value =~ $METHOD_OK
    : $name eq ':path' ? $value =~ $PATH_OK
    : $name eq ':authority' || $name eq 'host' ? $value =~ $AUTHORITY_OK
    : $name eq ':scheme' ? $value =~ $SCHEME_OK
    : $value =~ $VALUE_OK && $value !~ /\A[ \t]|[ \t]\z/;
  if (!$ok) {
    return 'error' if $pseudo;
    $f->{regular} = 1;
    return 'ignore';
  }
  return 'error' if $pseudo && ($trailer || $f->{regular});
  my $once = sub { return 0 if $f->{$name} || $value eq ''; $f->{$name} = 1; 1 };
  if ($name eq ':authority' || $name eq ':path' || $name eq ':scheme' || $name eq ':method') {
    return 'error' unless $once->();
    if ($name eq ':method') {
      $f->{head} = 1 if $value eq 'HEAD';
      $f->{connect} = 1 if $value eq 'CONNECT';
      $f->{options} = 1 if $value eq 'OPTIONS';
    }
    elsif ($name eq ':path') {
      if (substr($value, 0, 1) eq '/') { $f->{path_regular} = 1 }
      elsif ($value eq '*') { $f->{path_asterisk} = 1 }
    }
    elsif ($name eq ':scheme') { $f->{scheme_http} = 1 if lc($value) eq 'http' || lc($value) eq 'https' }
  }
  elsif ($name eq ':protocol') {
    return 'error' unless $self->{s}{enable_connect_protocol} && $once->();
  }
  elsif ($name eq 'host') {
    return 'error' if $f->{host} || $value eq '';
    $f->{host} = 1;
  }
  elsif ($name eq 'content-length') {
    return 'error' if $st->{cl} != -1 || $value !~ /\A[0-9]+\z/ || length($value) > 19
      || (length($value) == 19 && $value gt '9223372036854775807');
    $st->{cl} = 0 + $value;
  }
  elsif ($FORBIDDEN{$name}) { return 'error' }
  elsif ($name eq 'te') { return 'error' if lc($value) ne 'trailers' }
  elsif ($pseudo) { return 'error' }
  $f->{regular} = 1 unless $pseudo;
  return 'ok';
}

# Keeps a field within the limits (as src/h2.rs Block::add)
sub _store {
  my ($b, $name, $value, $s) = @_;
  return if $b->{over};
  $b->{size} += length($name) + length($value) + 32;
  my $pseudo = substr($name, 0, 1) eq ':';
  $b->{count}++ if !$pseudo && ($name ne 'cookie' || !defined $b->{cookie_at});
  if ($b->{size} > $s->{max_header_list_size} || $b->{count} > $s->{max_headers}) {
    $b->{over} = 1;
    $b->{fields} = [];
    return;
  }
  if ($pseudo) { $b->{$name} = $value if $name =~ /\A:(?:method|path|scheme|authority|protocol)\z/; return }
  if ($name eq 'cookie') {
    if (defined $b->{cookie_at}) { $b->{fields}[$b->{cookie_at}][1] .= "; $value"; return }
    $b->{cookie_at} = @{$b->{fields}};
  }
  $b->{host_at} = @{$b->{fields}} if $name eq 'host';
  push @{$b->{fields}}, [$name, $value];
  return;
}

# The request hash, or its refusal (src/h2.rs Block::request, the same order)
sub _request {
  my ($b) = @_;
  return _refusal('headers_too_large') if $b->{over};
  return _refusal('connect_unsupported') if !defined $b->{':protocol'} && ($b->{':method'} // '') eq 'CONNECT';
  my $target = $b->{':path'} // '';
  my ($raw_path, $query) = ($target, '');
  my $q = index($target, '?');
  ($raw_path, $query) = (substr($target, 0, $q), substr($target, $q + 1)) if $q >= 0;
  return _refusal('bad_path')
    unless (substr($raw_path, 0, 1) eq '/' || $target eq '*') && ($target !~ /[\x80-\xff]/ || _utf8($target));
  my $headers = $b->{fields};
  if (defined(my $authority = $b->{':authority'})) {
    if (defined $b->{host_at}) {
      return _refusal('bad_host') if lc $headers->[$b->{host_at}][1] ne lc $authority;
      $headers->[$b->{host_at}][1] = $authority;
    }
    else { unshift @$headers, ['host', $authority] }
  }
  my $path = $raw_path;
  $path =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge if index($path, '%') >= 0;
  if ($path =~ /[\x80-\xff]/) {
    my $chars = _utf8($path);
    $path = $$chars if $chars;
  }
  my %req = (method => $b->{':method'}, path => $path, raw_path => $raw_path, query_string => $query,
    http_version => '2', headers => $headers, scheme => $b->{':scheme'} // '');
  for my $h (@$headers) {
    my ($n, $v) = @$h;
    if    ($n eq 'content-length') { $req{content_length} = 0 + $v }
    elsif ($n eq 'accept')         { $req{sse} = 1 if $v =~ m{text/event-stream}i }
    elsif ($n eq 'expect')         { $req{expect_continue} = 1 if lc($v =~ s/\A[ \t]+|[ \t]+\z//gr) eq '100-continue' }
  }
  $req{protocol} = $b->{':protocol'} if defined $b->{':protocol'};
  return \%req;
}

# Well-formed UTF-8 (RFC 3629), as the HTTP/1.1 codec judges it
sub _utf8 {
  my ($bytes) = @_;
  my $chars = $bytes;
  return utf8::decode($chars) && $chars !~ /[\x{D800}-\x{DFFF}]|[^\x{0}-\x{10FFFF}]/ ? \$chars : undef;
}

# ---- HPACK (RFC 7541) -----------------------------------------------------------------

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

sub _index {
  my ($self, $i) = @_;
  return undef if $i == 0;
  return $stable[$i - 1] if $i <= @stable;
  return $self->{dtable}[$i - @stable - 1];
}

sub _add_entry {
  my ($self, $name, $value) = @_;
  my $size = length($name) + length($value) + 32;
  while (@{$self->{dtable}} && $self->{dsize} + $size > $self->{dmax}) {
    my $e = pop @{$self->{dtable}};
    $self->{dsize} -= 32 + length($e->[0]) + length($e->[1]);
  }
  return if $size > $self->{dmax};
  unshift @{$self->{dtable}}, [$name, $value];
  $self->{dsize} += $size;
  return;
}

# The fields of a header block, or undef (a compression error). The list is what the
# block holds; the limits (max_header_list_size, max_headers) are applied by the caller
# as it stores them, so a block that decompresses huge costs time, not memory: it is
# bounded by the frame size and the CONTINUATION limit.
sub _hpack_decode {
  my ($self, $buf) = @_;
  my ($pos, @out, $fields) = (0);
  while ($pos < length $buf) {
    my $c = ord substr $buf, $pos, 1;
    if ($c & 0x80) {
      my $e = $self->_index(_int($buf, \$pos, 7) // return undef) // return undef;
      push @out, [@$e];
    }
    elsif (($c & 0xe0) == 0x20) {
      return undef if $fields;
      my $size = _int($buf, \$pos, 5) // return undef;
      return undef if $size > 4096;
      $self->{dmax} = $size;
      while (@{$self->{dtable}} && $self->{dsize} > $self->{dmax}) {
        my $e = pop @{$self->{dtable}};
        $self->{dsize} -= 32 + length($e->[0]) + length($e->[1]);
      }
      next;
    }
    else {
      my $bits = ($c & 0xc0) == 0x40 ? 6 : 4;
      my $i = _int($buf, \$pos, $bits) // return undef;
      my $name;
      if ($i) { $name = ($self->_index($i) // return undef)->[0] }
      else    { $name = _str($buf, \$pos) // return undef }
      my $value = _str($buf, \$pos) // return undef;
      $self->_add_entry($name, $value) if $bits == 6;
      push @out, [$name, $value];
    }
    $fields = 1;
  }
  return \@out;
}

# ---- the other frames --------------------------------------------------------------------

sub _settings {
  my ($self, $flags, $id, $payload) = @_;
  return $self->_terminate(PROTOCOL_ERROR) if $id != 0;
  if ($flags & F_ACK) {
    # only ours, once
    return $self->_terminate(PROTOCOL_ERROR) if $self->{settings_acked}++;
    my $s = $self->{settings_sent};
    my $delta = $s->{4} - $self->{local}{window};
    $self->{local} = {window => $s->{4}, frame => $s->{5}, streams => $s->{3}};
    for my $st (grep { !$_->{gone} } values %{$self->{streams}}) {
      $st->{local} += $delta;
      $self->_update_consumed($st, $st->{id}, 0) unless $st->{queued};
    }
    return;
  }
  my $code = $self->_apply_settings($payload, 0);
  return $self->_terminate($code) if defined $code;
  return if $self->{term};
  $self->{acks}++;
  push @{$self->{urgent}}, [_frame(SETTINGS, F_ACK, 0, ''), ack => 1];
  return;
}

# The peer's settings, applied in order as nghttp2 does; the error code of a bad value,
# else undef
sub _apply_settings {
  my ($self, $payload, $upgrade) = @_;
  my $r = $self->{remote};
  my @pairs = unpack '(nN)*', $payload;
  while (my ($k, $v) = splice @pairs, 0, 2) {
    if ($k == 1) { $r->{table} = $v; $self->{enc}{settings}{1} = $v }
    elsif ($k == 2) { return PROTOCOL_ERROR if $v > 1 }
    elsif ($k == 4) {
      return FLOW_CONTROL_ERROR if $v > MAX_WINDOW;
      my $delta = $v - $r->{window};
      for my $st (grep { !$_->{gone} } values %{$self->{streams}}) {
        return FLOW_CONTROL_ERROR if $st->{remote} + $delta > MAX_WINDOW;
        $st->{remote} += $delta;
      }
      $r->{window} = $v;
    }
    elsif ($k == 5) {
      return PROTOCOL_ERROR if $v < 16384 || $v > 2**24 - 1;
      $r->{frame} = $v;
    }
    elsif ($k == 8) { return PROTOCOL_ERROR if $v > 1 }
    elsif ($k == 9) {
      return PROTOCOL_ERROR if $v > 1 || (defined $r->{no_7540} && $r->{no_7540} != $v);
      $r->{no_7540} = $v;
    }
  }
  $r->{no_7540} //= 0;
  return undef;
}

sub _ping {
  my ($self, $flags, $id, $payload) = @_;
  return $self->_terminate(PROTOCOL_ERROR) if $id != 0;
  return $self->_terminate(FRAME_SIZE_ERROR) if length $payload != 8;
  return if $flags & F_ACK;
  return $self->_die('flood') if $self->{acks} >= MAX_OUTBOUND_ACK;
  $self->{acks}++;
  push @{$self->{urgent}}, [_frame(PING, F_ACK, 0, $payload), ack => 1];
  return;
}

# (deprecated by RFC 9113 and ignored by nghttp2 but for its length, even on stream 0)
sub _priority {
  my ($self, $flags, $id, $payload) = @_;
  return $self->_terminate(FRAME_SIZE_ERROR) if length $payload != 5;
  return;
}

sub _rst_stream {
  my ($self, $flags, $id, $payload) = @_;
  return $self->_terminate(PROTOCOL_ERROR) if $id == 0;
  return $self->_terminate(FRAME_SIZE_ERROR) if length $payload != 4;
  return $self->_terminate(PROTOCOL_ERROR) if $self->_idle($id);
  my $code = unpack 'N', $payload;
  my $st = $self->_live($id);
  $self->_close($st, $code) if $st;
  # nghttp2's rate limit (a bucket refilled each second): past it, GOAWAY
  # INTERNAL_ERROR, the streams in flight finish
  return if $self->{goaway};
  my $r = $self->{rst};
  my $now = POSIX::floor(Time::HiRes::clock_gettime(Time::HiRes::CLOCK_MONOTONIC()));
  if ($now != $r->{tstamp}) {
    my $d = $now > $r->{tstamp} ? $now - $r->{tstamp} : 1;
    $r->{tstamp} = $now;
    $r->{val} += $self->{s}{rst_rate_limit}[1] * $d;
    $r->{val} = $self->{s}{rst_rate_limit}[0] if $r->{val} > $self->{s}{rst_rate_limit}[0];
  }
  if ($r->{val} >= 1) { $r->{val}--; return }
  $self->{rapid_reset} = 1;
  $self->{goaway} = 1;
  push @{$self->{reg}}, [_frame(GOAWAY, 0, 0, pack('NN', $self->{last_recv}, INTERNAL_ERROR)), goaway => INTERNAL_ERROR,
    last => $self->{last_recv}];
  return;
}

sub _window_update {
  my ($self, $flags, $id, $payload) = @_;
  return $self->_terminate(FRAME_SIZE_ERROR) if length $payload != 4;
  my $inc = unpack('N', $payload) & 0x7fffffff;
  if ($id == 0) {
    return $self->_terminate(PROTOCOL_ERROR) if $inc == 0;
    return $self->_terminate(FLOW_CONTROL_ERROR) if MAX_WINDOW - $inc < $self->{conn}{remote};
    $self->{conn}{remote} += $inc;
    return;
  }
  return $self->_terminate(PROTOCOL_ERROR) if $self->_idle($id);
  my $st = $self->_live($id) or return;
  return $self->_terminate(PROTOCOL_ERROR) if $inc == 0;
  return $self->_terminate(FLOW_CONTROL_ERROR) if MAX_WINDOW - $inc < $st->{remote};
  $st->{remote} += $inc;
  return;
}

sub _goaway {
  my ($self, $flags, $id, $payload) = @_;
  return $self->_terminate(PROTOCOL_ERROR) if $id != 0;
  return $self->_terminate(FRAME_SIZE_ERROR) if length $payload < 8;
  my ($last, $code) = unpack 'NN', $payload;
  $last &= 0x7fffffff;
  # a client's last stream id names a server-initiated stream: none here
  return $self->_terminate(PROTOCOL_ERROR) if $last > 0;
  $self->{goaway_recv} = 1;
  push @{$self->{events}}, ['goaway', $last, $code];
  return;
}

# ---- streams closing --------------------------------------------------------------------

# One direction ended; both: the stream closes normally
sub _shut {
  my ($self, $st, $side) = @_;
  $st->{"shut_$side"} = 1;
  $self->_close($st, NO_ERROR) if $st->{shut_rd} && $st->{shut_wr};
  return;
}

sub _close {
  my ($self, $st, $code) = @_;
  return if $st->{gone};
  $st->{gone} = 1;
  $self->{incoming}--;
  delete $self->{streams}{$st->{id}};
  @{$self->{ready}} = grep { $_ != $st } @{$self->{ready}};
  push @{$self->{events}}, $code ? ['reset', $st->{id}, $code] : ['closed', $st->{id}] if $st->{delivered};
  return;
}

# ---- writing ------------------------------------------------------------------------------

# Moves frames into the output until it holds $max bytes: first the urgent ones (our
# SETTINGS, acknowledgements), then the others, then (unless $control_only) DATA
sub _pull {
  my ($self, $max, $control_only) = @_;
  while (!$self->{dead} && !$self->{term_sent} && length($self->{out}) < $max) {
    my $item = shift @{$self->{urgent}} // shift @{$self->{reg}};
    if ($item) {
      # a frame of a stream that was reset or closed meanwhile is not sent
      my %what = @$item[1 .. $#$item];
      # and a session ending on an error sends its GOAWAY only (and SETTINGS)
      if (($what{st} && ($what{st}{gone} || $what{st}{closing}))
        || ($self->{term} && !defined $what{goaway} && !$what{settings})) {
        $self->{acks}-- if $what{ack};
        $what{window}{queued} = 0 if $what{window};
        next;
      }
      $self->_sent(@$item);
      next;
    }
    last if $control_only || $self->{conn}{remote} <= 0;
    last unless $self->_data_frame;
  }
  return;
}

# A frame leaves: what its sending does
sub _sent {
  my ($self, $bytes, %what) = @_;
  $self->{out} .= $bytes;
  $self->{acks}-- if $what{ack};
  $what{window}{queued} = 0 if $what{window};
  if (defined $what{goaway}) {
    $self->{goaway_sent} = 1;
    $self->{term_sent} = 1 if $what{term};
    # the streams above the GOAWAY's last stream id will not be processed
    $self->_close($_, REFUSED_STREAM) for sort { $a->{id} <=> $b->{id} }
      grep { !$_->{gone} && $_->{id} > $what{last} } values %{$self->{streams}};
    my $code = $what{goaway};
    $self->{error} //= _err($self->{rapid_reset} && $code == INTERNAL_ERROR ? 'rapid_reset'
      : (grep { $PAGI::Server::Protocol::Errors::H2{$_}[0] == $code } _code_kinds())[0] // 'internal_error')
      if $code != NO_ERROR && !(defined $self->{own_goaway} && $self->{own_goaway} == $code);
  }
  if (my $st = $what{rst}) { $self->_close($st, $what{code}) }
  if (my $st = $what{head}) {
    $st->{head_sent} = 1;
    $self->_schedule($st) if !$st->{no_body} && ($st->{ended} || length $st->{out});
  }
  $self->_shut($what{end}, 'wr') if $what{end} && !$what{end}{gone};
  return;
}

# The h2 kinds named after error codes, in code order
sub _code_kinds {
  my $h = \%PAGI::Server::Protocol::Errors::H2;
  return qw(protocol_error internal_error flow_control_error settings_timeout stream_closed frame_size_error
    refused_stream cancel compression_error connect_error enhance_your_calm inadequate_security http_1_1_required);
}

# One DATA frame from the first stream ready, within the windows; false when none
sub _data_frame {
  my ($self) = @_;
  while (my $st = $self->{ready}[0]) {
    my $n = DATA_PAYLOAD;
    $n = $st->{remote} if $st->{remote} < $n;
    $n = $self->{conn}{remote} if $self->{conn}{remote} < $n;
    $n = $self->{remote}{frame} if $self->{remote}{frame} < $n;
    if ($n <= 0) {
      # flow control: the stream waits for a WINDOW_UPDATE (and keeps its place)
      shift @{$self->{ready}};
      $st->{scheduled} = 0;
      $st->{blocked} = 1;
      next;
    }
    my $take = length $st->{out} < $n ? length $st->{out} : $n;
    if (!$take && !$st->{ended}) {
      shift @{$self->{ready}};
      $st->{scheduled} = 0;
      next;
    }
    my $chunk = substr($st->{out}, 0, $take, '');
    my ($flags, $end) = (0, 0);
    my $trailers;
    if (!length $st->{out} && $st->{ended}) {
      $trailers = delete $st->{trailers};
      $end = 1;
      $flags = F_END_STREAM unless $trailers;
      shift @{$self->{ready}};
    }
    $st->{remote} -= $take;
    $self->{conn}{remote} -= $take;
    push @{$self->{reg}}, [$self->_headers_frames($st->{id}, $trailers, 1), end => $st, st => $st] if $trailers;
    # (an empty DATA frame before trailers is not sent)
    $self->_sent(_frame(DATA, $flags, $st->{id}, $chunk), $flags ? (end => $st) : ()) unless $trailers && !$take;
    return 1;
  }
  return 0;
}

# HEADERS (and CONTINUATION) frames of a field list
sub _headers_frames {
  my ($self, $id, $fields, $end) = @_;
  my $block = headers_encode($self->{enc}, [map { @$_ } @$fields]);
  my $max = $self->{remote}{frame};
  my $first = substr($block, 0, $max, '');
  my $out = _frame(HEADERS, ($end ? F_END_STREAM : 0) | (length $block ? 0 : F_END_HEADERS), $id, $first);
  while (length $block) {
    my $part = substr($block, 0, $max, '');
    $out .= _frame(CONTINUATION, length $block ? 0 : F_END_HEADERS, $id, $part);
  }
  return $out;
}

sub output {
  my ($self, $max) = @_;
  $max = ~0 >> 1 unless defined $max;
  $max = 0 if $max < 0;
  # streams whose window opened are ready again
  for my $st (grep { $_->{blocked} && $_->{remote} > 0 } values %{$self->{streams}}) {
    $st->{blocked} = 0;
    push @{$self->{ready}}, $st unless $st->{scheduled}++;
  }
  $self->_pull($max, 0);
  return substr($self->{out}, 0, $max, '');
}

# ---- the application's side -------------------------------------------------------------

my %CONNECTION_SPECIFIC = map { $_ => 1 } qw(connection keep-alive proxy-connection transfer-encoding upgrade);

# The app's fields: validated (check_headers' rules and messages), lowercased,
# connection-specific ones dropped; ($fields, $content_length) or (undef, $message).
# A head ($server defined, the Server field's value: '' for none) gets date and server
# unless given.
sub _app_fields {
  my ($headers, $server_value) = @_;
  my $head = defined $server_value;
  require PAGI::Server::Protocol::HTTP1::PP;
  my $err = $head ? PAGI::Server::Protocol::HTTP1::PP::check_headers($headers)
    : PAGI::Server::Protocol::HTTP1::PP::_check_trailers($headers);
  return (undef, $err) if defined $err;
  my (@fields, $date, $server, $cl);
  for my $h (@{$headers // []}) {
    my $n = lc($h->[0] // '');
    my $v = $h->[1] // '';
    utf8::downgrade($n, 1);
    utf8::downgrade($v, 1);
    next if $CONNECTION_SPECIFIC{$n} || ($n eq 'te' && lc($v =~ s/\A[ \t]+|[ \t]+\z//gr) ne 'trailers');
    $date = 1 if $n eq 'date';
    $server = 1 if $n eq 'server';
    $cl = 0 + $v if $n eq 'content-length';
    push @fields, [$n, $v];
  }
  if ($head) {
    push @fields, ['date', PAGI::Server::Protocol::HTTP1::PP::_date_value()] unless $date;
    push @fields, ['server', $server_value] if !$server && length $server_value;
  }
  return (\@fields, $cl);
}

sub _open {
  my ($self, $id) = @_;
  return undef if $self->{dead};
  my $st = $self->_live($id // 0);
  return $st && $st->{delivered} && !$st->{closing} ? $st : undef;
}

sub respond {
  my ($self, $id, $status, $headers, $end_stream) = @_;
  return (undef, _misuse('bad_status'))
    unless defined $status && $status =~ /\A[1-9][0-9][0-9]\z/ && $status != 101;
  my ($fields, $length) = _app_fields($headers, $self->{server});
  return (undef, $length) unless $fields;
  my $st = $self->_open($id) or return (undef, _misuse('stream_closed'));
  return (undef, _misuse('response_started')) if $st->{started};
  my $interim = $status < 200;
  unshift @$fields, [':status', 0 + $status];
  if ($interim) {
    push @{$self->{reg}}, [$self->_headers_frames($id, $fields, 0), st => $st];
    return (1, undef);
  }
  $st->{started} = 1;
  $st->{no_body} = $st->{ended} = $end_stream ? 1 : 0;
  push @{$self->{reg}}, [$self->_headers_frames($id, $fields, $end_stream), head => $st, st => $st, ($end_stream ? (end => $st) : ())];
  return (1, $length);
}

sub send_data {
  my ($self, $id, $data, $end) = @_;
  Carp::croak('PAGI::Server::Protocol::HTTP2::PP::Session::send_data: the body must be bytes')
    if defined $data && utf8::is_utf8($data) && !utf8::downgrade($data = "$data", 1);
  my $st = $self->_open($id) or return (undef, _misuse('stream_closed'));
  return (undef, _misuse('response_not_started')) unless $st->{started};
  return (undef, _misuse('response_ended')) if $st->{ended};
  $st->{out} .= $data // '';
  $st->{ended} = $end ? 1 : 0;
  $self->_schedule($st);
  return 1;
}

sub send_trailers {
  my ($self, $id, $headers) = @_;
  my ($fields, $err) = _app_fields($headers, undef);
  return (undef, $err) unless $fields;
  my $st = $self->_open($id) or return (undef, _misuse('stream_closed'));
  return (undef, _misuse('response_not_started')) unless $st->{started};
  return (undef, _misuse('response_ended')) if $st->{ended};
  $st->{ended} = 1;
  $st->{trailers} = $fields if @$fields;
  $self->_schedule($st);
  return 1;
}

# A stream with something to send joins the DATA queue (once its head is written)
sub _schedule {
  my ($self, $st) = @_;
  push @{$self->{ready}}, $st if $st->{head_sent} && !$st->{blocked} && !$st->{scheduled}++;
  return;
}

sub buffered {
  my ($self, $id) = @_;
  my $st = $self->_live($id // 0) or return 0;
  return length $st->{out};
}

sub consumed {
  my ($self, $id, $n) = @_;
  return 0 if $self->{dead} || !$n || $n <= 0;
  my $st = $self->_live($id // 0) or return 0;
  $self->_update_consumed($st, $id, $n);
  return 0;
}

sub reset {
  my ($self, $id, $code) = @_;
  return 0 if $self->{dead};
  $code //= 8;
  my $st = $self->_live($id // 0) or return 0;
  return 0 if $st->{closing};
  $st->{closing} = 1;
  $st->{out} = '';
  $st->{ended} = 1;
  $st->{trailers} = undef;
  @{$self->{ready}} = grep { $_ != $st } @{$self->{ready}};
  $st->{scheduled} = 0;
  push @{$self->{reg}}, [_frame(RST_STREAM, 0, $id, pack 'N', $code), rst => $st, code => $code];
  return 0;
}

sub goaway {
  my ($self, $code, $graceful) = @_;
  return 0 if $self->{dead};
  $code //= 0;
  $self->{own_goaway} = $code;
  if ($graceful) {
    return 0 if $self->{notice}++ || $self->{goaway};
    push @{$self->{reg}}, [_frame(GOAWAY, 0, 0, pack('NN', 2**31 - 1, 0))];
  }
  elsif ($code == NO_ERROR) {
    return 0 if $self->{goaway} || $self->{term};
    $self->{goaway} = 1;
    push @{$self->{reg}}, [_frame(GOAWAY, 0, 0, pack('NN', $self->{last_proc}, 0)), goaway => 0, last => $self->{last_proc}];
  }
  else {
    return 0 if $self->{term};
    $self->{term} = 1;
    $self->{goaway} = 1;
    push @{$self->{reg}}, [_frame(GOAWAY, 0, 0, pack('NN', $self->{last_proc}, $code)), goaway => $code, term => 1,
      last => $self->{last_proc}];
  }
  return 0;
}

sub want_write {
  my ($self) = @_;
  return 1 if length $self->{out};
  return 0 if $self->{dead} || $self->{term_sent};
  return @{$self->{urgent}} || @{$self->{reg}} || (@{$self->{ready}} && $self->{conn}{remote} > 0) ? 1 : 0;
}

sub is_closed {
  my ($self) = @_;
  return 0 if length $self->{out};
  return 1 if $self->{dead};
  return $self->_want_read_closed && !$self->want_write ? 1 : 0;
}

sub open_streams { return scalar grep { $_->{delivered} && !$_->{gone} } values %{$_[0]{streams}} }
sub last_stream_id { return $_[0]{last_proc} }

1;

=head1 NAME

PAGI::Server::Protocol::HTTP2::PP - the HTTP/2 session in pure Perl

=head1 DESCRIPTION

C<new_session> and the methods of C<PAGI::Server::Protocol::HTTP2::PP::Session>, with
the contract of F<doc/codec.md> ("The codec interface (HTTP/2)"). Frames are read and
written here; HPACK uses Protocol::HTTP2's static table, Huffman code and header
encoder (Debian C<libprotocol-http2-perl>). The rules are those of nghttp2 1.68.1 as
the XS backend runs it; F<doc/codec.md> lists what differs
(F<t/33-h2-differential.t> marks each as a TODO test).

=head1 SEE ALSO

L<PAGI::Server::Protocol::HTTP2>, L<PAGI::Server::Protocol::HTTP2::XS>, L<Protocol::HTTP2>.

=cut
