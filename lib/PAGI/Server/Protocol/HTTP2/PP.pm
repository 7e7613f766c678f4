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
#
# The session reads frames, keeps the streams' and the connection's state, and calls
# down into three objects that own theirs: ::PP::HPACK (the header blocks' decoder),
# ::PP::Block (one decoded block judged and made a request) and ::PP::Output (queued
# frames, the responses, DATA within the peer's windows, the bytes out).
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
use PAGI::Server::Protocol::Errors;
use PAGI::Server::Protocol::HTTP2::PP::HPACK;
use PAGI::Server::Protocol::HTTP2::PP::Block;
use PAGI::Server::Protocol::HTTP2::PP::Output qw(:frames app_fields);

use constant {
  NO_ERROR => 0, PROTOCOL_ERROR => 1, INTERNAL_ERROR => 2, FLOW_CONTROL_ERROR => 3,
  STREAM_CLOSED => 5, FRAME_SIZE_ERROR => 6, REFUSED_STREAM => 7, COMPRESSION_ERROR => 9,
  ENHANCE_YOUR_CALM => 11,
  PROBE_CAP => 65536,          # as src/h2.rs
  MAX_CONTINUATIONS => 8,      # nghttp2's default
  MAX_OUTBOUND_ACK => 1000,    # nghttp2's default
  MAX_SETTINGS => 32,          # nghttp2's default
  UNLIMITED => 2**32 - 1,
};

my $PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

sub _new {
  my ($class, $s) = @_;
  require PAGI::Server::Protocol::HTTP1::PP;
  my $self = bless {
    s => $s,
    # The Server field of the response heads (the codec's, when the session is made)
    server => PAGI::Server::Protocol::HTTP1::PP::_server_value(),
    in => '', state => 'preface',
    events => [], output => PAGI::Server::Protocol::HTTP2::PP::Output->new,
    streams => {}, last_recv => 0, last_proc => 0, incoming => 0,
    # Our settings as the peer has acknowledged them, and as submitted
    local => {window => 65535, frame => 16384, streams => UNLIMITED},
    pending_streams => $s->{max_concurrent_streams},
    # the peer's SETTINGS_NO_RFC7540_PRIORITIES once given (the others are the output's)
    remote => {},
    # the connection's receive window
    conn => {recv => 0, consumed => 0, local => 65535, queued => 0},
    hpack => PAGI::Server::Protocol::HTTP2::PP::HPACK->new,
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
  $self->{output}->urgent(frame(SETTINGS, 0, 0, join '', map { pack 'nN', @$_ } @iv), settings => 1);
  if (defined $s->{upgrade}) {
    my $payload = _base64url($s->{upgrade});
    return (undef, _err('bad_upgrade_settings')) unless defined $payload && length($payload) % 6 == 0;
    # The HTTP2-Settings are the client's first SETTINGS, taken as acknowledged
    return (undef, _err('bad_upgrade_settings')) if defined $self->_apply_settings($payload, 1);
    $self->{last_recv} = $self->{last_proc} = 1;
    $self->{incoming} = 1;
    $self->_stream(1, shut_rd => 1, delivered => 1, head => $s->{upgrade_head});
  }
  $self->_pull(~0 >> 1, 0);
  return $self;
}

# {error => KIND, message => TEXT} of the h2 table
sub _err { return {error => $_[0], message => $PAGI::Server::Protocol::Errors::H2{$_[0]}[1]} }
sub _misuse { return PAGI::Server::Protocol::Errors::app_message(@_) }

sub _base64url {
  my ($v) = @_;
  $v =~ s/=+\z//;
  return undef if $v =~ /[^A-Za-z0-9\-_]/ || length($v) % 4 == 1;
  $v =~ tr{-_}{+/};
  require MIME::Base64;
  return MIME::Base64::decode_base64($v);
}

# A new stream (its response is the output's)
sub _stream {
  my ($self, $id, %more) = @_;
  $self->{output}->open_stream($id);
  return $self->{streams}{$id} = {
    id => $id, shut_rd => 0, shut_wr => 0, closing => 0, delivered => 0, refused => 0,
    recv => 0, consumed => 0, local => $self->{local}{window},
    queued => 0, cl => -1, got => 0, headers_seen => 0,
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
    $self->_pull(PROBE_CAP, 1) if $self->{output}->size < PROBE_CAP;
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
  $self->{output}->queue(frame(GOAWAY, 0, 0, pack('NN', $self->{last_proc}, $code)), goaway => $code, term => 1,
    last => $self->{last_proc});
  $self->{in} = '';
  return;
}

# nghttp2 failed as a whole (a fatal error): a GOAWAY written here, nothing else
sub _die {
  my ($self, $kind) = @_;
  $self->{dead} = 1;
  $self->{error} //= _err($kind);
  $self->{output}->append(frame(GOAWAY, 0, 0, pack('NN', $self->{last_proc}, PAGI::Server::Protocol::HTTP2::error_code($kind))));
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
    $self->{output}->queue(frame(WINDOW_UPDATE, 0, $id, pack 'N', $size), window => $w, ($id ? (st => $id) : ()));
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
        $self->{output}->queue(frame(RST_STREAM, 0, $id, pack 'N', REFUSED_STREAM));
      }
      else {
        $st = $self->_stream($id);
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
  my $fields = $self->{hpack}->decode($b->{buf});
  return $self->_terminate(COMPRESSION_ERROR) unless $fields;
  return if $b->{ignore};
  my $st = $b->{st};
  my $end = $b->{flags} & F_END_STREAM;
  my $trailer = $b->{trailer};
  # nghttp2's HTTP messaging, field by field, then for the whole block
  my $m = PAGI::Server::Protocol::HTTP2::PP::Block->new($self->{s}, $trailer, $st->{cl});
  for my $nv (@$fields) {
    $m->add(@$nv) or return $self->_terminate(PROTOCOL_ERROR);
  }
  $m->complete($end) or return $self->_terminate(PROTOCOL_ERROR);
  $st->{cl} = $m->content_length;
  return $self->_terminate(PROTOCOL_ERROR) if $end && $st->{cl} != -1 && $st->{cl} != $st->{got};
  if ($trailer) {
    return if $st->{refused};
    if ($m->over) {
      push @{$self->{events}}, ['error', $st->{id}, _err('trailers_too_large')];
      $self->reset($st->{id}, ENHANCE_YOUR_CALM);
    }
    else { push @{$self->{events}}, ['trailers', $st->{id}, $m->fields] }
  }
  else {
    my $req = $m->request;
    $st->{delivered} = 1;
    $st->{refused} = exists $req->{error} ? 1 : 0;
    $st->{tunnel} = defined $req->{protocol} ? 1 : 0;
    push @{$self->{events}}, ['request', $st->{id}, $req, $end ? 1 : 0];
  }
  $self->_shut($st, 'rd') if $end;
  return;
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
  $self->{output}->urgent(frame(SETTINGS, F_ACK, 0, ''), ack => 1);
  return;
}

# The peer's settings, applied in order as nghttp2 does; the error code of a bad value,
# else undef
sub _apply_settings {
  my ($self, $payload, $upgrade) = @_;
  my ($r, $out) = @$self{qw(remote output)};
  my @pairs = unpack '(nN)*', $payload;
  while (my ($k, $v) = splice @pairs, 0, 2) {
    if ($k == 1) { $out->table_size($v) }
    elsif ($k == 2) { return PROTOCOL_ERROR if $v > 1 }
    elsif ($k == 4) { return FLOW_CONTROL_ERROR if $v > MAX_WINDOW || !$out->initial_window($v) }
    elsif ($k == 5) {
      return PROTOCOL_ERROR if $v < 16384 || $v > 2**24 - 1;
      $out->max_frame($v);
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
  $self->{output}->urgent(frame(PING, F_ACK, 0, $payload), ack => 1);
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
  $self->{output}->queue(frame(GOAWAY, 0, 0, pack('NN', $self->{last_recv}, INTERNAL_ERROR)), goaway => INTERNAL_ERROR,
    last => $self->{last_recv});
  return;
}

sub _window_update {
  my ($self, $flags, $id, $payload) = @_;
  return $self->_terminate(FRAME_SIZE_ERROR) if length $payload != 4;
  my $inc = unpack('N', $payload) & 0x7fffffff;
  if ($id == 0) {
    return $self->_terminate(PROTOCOL_ERROR) if $inc == 0;
    $self->{output}->window_update(0, $inc) or return $self->_terminate(FLOW_CONTROL_ERROR);
    return;
  }
  return $self->_terminate(PROTOCOL_ERROR) if $self->_idle($id);
  $self->_live($id) or return;
  return $self->_terminate(PROTOCOL_ERROR) if $inc == 0;
  $self->{output}->window_update($id, $inc) or return $self->_terminate(FLOW_CONTROL_ERROR);
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
  return $self->_close($st, NO_ERROR) if $st->{shut_rd} && $st->{shut_wr};
  # Our side ended while the client's is open (a response that did not wait for the
  # whole request body): RST_STREAM NO_ERROR tells it to stop sending (RFC 9113 8.1);
  # a tunnel's client ends its own side (RFC 8441 5)
  if ($side eq 'wr' && !$st->{closing} && !$st->{tunnel}) {
    $st->{closing} = 1;
    $self->{output}->queue(frame(RST_STREAM, 0, $st->{id}, pack 'N', NO_ERROR), rst => $st->{id}, code => NO_ERROR);
  }
  return;
}

sub _close {
  my ($self, $st, $code) = @_;
  return if $st->{gone};
  $st->{gone} = 1;
  $self->{incoming}--;
  delete $self->{streams}{$st->{id}};
  $self->{output}->close_stream($st->{id});
  push @{$self->{events}}, $code ? ['reset', $st->{id}, $code] : ['closed', $st->{id}] if $st->{delivered};
  return;
}

# ---- writing ------------------------------------------------------------------------------

# Moves frames into the output until it holds $max bytes: first the urgent ones (our
# SETTINGS, acknowledgements), then the others, then (unless $control_only) DATA
sub _pull {
  my ($self, $max, $control_only) = @_;
  my $out = $self->{output};
  while (!$self->{dead} && !$self->{term_sent} && $out->size < $max) {
    if (my $item = $out->next_frame) {
      # a frame of a stream that was reset or closed meanwhile is not sent
      my %what = @$item[1 .. $#$item];
      # and a session ending on an error sends its GOAWAY only (and SETTINGS)
      if ((defined $what{st} && !$self->_sending($what{st}))
        || ($self->{term} && !defined $what{goaway} && !$what{settings})) {
        $self->{acks}-- if $what{ack};
        $what{window}{queued} = 0 if $what{window};
        next;
      }
      $self->_sent(@$item);
      next;
    }
    last if $control_only;
    my $ended = $out->data_frame;
    last unless defined $ended;
    if ($ended and my $st = $self->{streams}{$ended}) { $self->_shut($st, 'wr') }
  }
  return;
}

# A stream whose frames are sent: open, not being reset
sub _sending { my $st = $_[0]{streams}{$_[1]}; return $st && !$st->{closing} }

# A frame leaves: what its sending does
sub _sent {
  my ($self, $bytes, %what) = @_;
  $self->{output}->append($bytes);
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
  if (defined $what{rst} and my $st = $self->{streams}{$what{rst}}) { $self->_close($st, $what{code}) }
  $self->{output}->head_written($what{head}) if defined $what{head};
  if (defined $what{end} and my $st = $self->{streams}{$what{end}}) { $self->_shut($st, 'wr') }
  return;
}

# The h2 kinds named after error codes, in code order
sub _code_kinds {
  my $h = \%PAGI::Server::Protocol::Errors::H2;
  return qw(protocol_error internal_error flow_control_error settings_timeout stream_closed frame_size_error
    refused_stream cancel compression_error connect_error enhance_your_calm inadequate_security http_1_1_required);
}

sub output {
  my ($self, $max) = @_;
  $max = ~0 >> 1 unless defined $max;
  $max = 0 if $max < 0;
  $self->{output}->unblock;
  $self->_pull($max, 0);
  return $self->{output}->take($max);
}

# ---- the application's side -------------------------------------------------------------

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
  my ($fields, $length) = app_fields($headers, $self->{server});
  return (undef, $length) unless $fields;
  $self->_open($id) or return (undef, _misuse('stream_closed'));
  my $kind = $self->{output}->respond($id, $status, $fields, $end_stream);
  return (undef, _misuse($kind)) if $kind;
  return (1, $status < 200 ? undef : $length);
}

sub send_data {
  my ($self, $id, $data, $end) = @_;
  Carp::croak('PAGI::Server::Protocol::HTTP2::PP::Session::send_data: the body must be bytes')
    if defined $data && utf8::is_utf8($data) && !utf8::downgrade($data = "$data", 1);
  $self->_open($id) or return (undef, _misuse('stream_closed'));
  my $kind = $self->{output}->send_data($id, $data, $end);
  return $kind ? (undef, _misuse($kind)) : 1;
}

sub send_trailers {
  my ($self, $id, $headers) = @_;
  my ($fields, $err) = app_fields($headers, undef);
  return (undef, $err) unless $fields;
  $self->_open($id) or return (undef, _misuse('stream_closed'));
  my $kind = $self->{output}->send_trailers($id, $fields);
  return $kind ? (undef, _misuse($kind)) : 1;
}

sub buffered {
  my ($self, $id) = @_;
  $self->_live($id // 0) or return 0;
  return $self->{output}->buffered($id);
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
  $self->{output}->cancel($id);
  $self->{output}->queue(frame(RST_STREAM, 0, $id, pack 'N', $code), rst => $id, code => $code);
  return 0;
}

sub goaway {
  my ($self, $code, $graceful) = @_;
  return 0 if $self->{dead};
  $code //= 0;
  $self->{own_goaway} = $code;
  my $out = $self->{output};
  if ($graceful) {
    return 0 if $self->{notice}++ || $self->{goaway};
    $out->queue(frame(GOAWAY, 0, 0, pack('NN', 2**31 - 1, 0)));
  }
  elsif ($code == NO_ERROR) {
    return 0 if $self->{goaway} || $self->{term};
    $self->{goaway} = 1;
    $out->queue(frame(GOAWAY, 0, 0, pack('NN', $self->{last_proc}, 0)), goaway => 0, last => $self->{last_proc});
  }
  else {
    return 0 if $self->{term};
    $self->{term} = 1;
    $self->{goaway} = 1;
    $out->queue(frame(GOAWAY, 0, 0, pack('NN', $self->{last_proc}, $code)), goaway => $code, term => 1,
      last => $self->{last_proc});
  }
  return 0;
}

sub want_write {
  my ($self) = @_;
  return 1 if $self->{output}->size;
  return 0 if $self->{dead} || $self->{term_sent};
  return $self->{output}->pending;
}

sub is_closed {
  my ($self) = @_;
  return 0 if $self->{output}->size;
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
the contract of F<doc/codec.md> ("The codec interface (HTTP/2)"). Frames are read
here, and the session's state kept; L<PAGI::Server::Protocol::HTTP2::PP::HPACK>
decodes header blocks, L<PAGI::Server::Protocol::HTTP2::PP::Block> judges one and
makes the request, L<PAGI::Server::Protocol::HTTP2::PP::Output> writes (queued
frames, responses, DATA within the flow-control windows). HPACK uses
Protocol::HTTP2's static table, Huffman code and header encoder (Debian
C<libprotocol-http2-perl>). The rules are those of nghttp2 1.68.1 as
the XS backend runs it; F<doc/codec.md> lists what differs
(F<t/33-h2-differential.t> marks each as a TODO test).

=head1 SEE ALSO

L<PAGI::Server::Protocol::HTTP2>, L<PAGI::Server::Protocol::HTTP2::XS>, L<Protocol::HTTP2>.

=cut
