package PAGI::Server::Connection::Response;
use strict;
use warnings;
use experimental 'signatures';
use Future;
use PAGI::Server::Future;
use PAGI::Server::Protocol::HTTP1;
use PAGI::Server::ConnectionState qw(:fields);
use PAGI::Server::Connection::Fields qw(:fields);
use PAGI::Server::Connection::Request qw(:fields);
use PAGI::Server::Config qw(DEBUG STRICT_SENDS FULLFLUSH);
use PAGI::Server::Shared qw(ACCESS_LOGGER);
use PAGI::Server::EventValidator qw(body_error trailers_error send_error);

our $VERSION = '0.001';

# The response path of an HTTP request: the http.response.* events an app sends, and
# how their bytes reach the connection's output buffer (serialized by the codec,
# framed by Content-Length or chunks, streamed from files). Its subs are methods of
# PAGI::Server::Connection (which imports them); they keep the response's state in
# the request's record, and write through the connection's _write.

BEGIN {
  no strict 'refs';
  *$_ = \&{"PAGI::Server::Protocol::HTTP1::$_"}
    for qw(serialize_response check_headers serialize_chunk serialize_trailers
    F_CLOSE M_NONE M_LENGTH M_CHUNKED);
}
use constant FILE_CHUNK => 1 << 16;
# The end of a chunked body without trailers, as the codec writes it
use constant LAST_CHUNK => (serialize_trailers([]))[0];

use Exporter 'import';
our @EXPORT_OK = qw(_send _write_head _write_body _write_trailers _end_body _end_chunks
  _send_future _send_file _response_complete);

# What a send that needs no waiting returns: one shared done Future
# (PAGI::Server::Future)
our $DONE = $PAGI::Server::Future::DONE;

# HTTP's send (SSE sends its HTTP events through it too)
sub _send ($self, $ev) {
  my $rq = $self->[RQ];
  return $DONE if !$rq || !$rq->[CSTATE][CS_CONNECTED] && !$rq->[HALF_CLOSED];
  my $type = ref $ev eq 'HASH' ? $ev->{type} // '' : '';
  if ($type eq 'http.response.body') {
    return Future->fail("http.response.body before http.response.start\n") unless $rq->[STARTED];
    return _after_complete($self, $type) if $rq->[COMPLETE];
    # The event's fields (PAGI::Server::EventValidator): a body of bytes alone passes,
    # so only the others are checked
    if (defined $ev->{file} || defined $ev->{fh}) {
      my $err = body_error($ev);
      return defined $err ? Future->fail("$err\n") : $self->_send_file($ev);
    }
    my $body = $ev->{body} // '';
    if (utf8::is_utf8($body)) {
      # Only the representation may be upgraded; characters above 0xFF are not bytes
      if (defined(my $err = body_error($ev))) { return Future->fail("$err\n") }
      utf8::downgrade($body, 1);
    }
    my $more = $ev->{more} // $ev->{more_body};
    if (!$rq->[HEAD_SENT]) {
      if (!$more && !$rq->[TRAILERS]) {
        # Fast path: head and body at once (HTTP/1.1's inline: one buffer, one write;
        # another protocol's through its writer)
        if (my $whole = $self->[WHOLE]) {
          my $err = $whole->($self, $body);
          return $err ? Future->fail($err) : _response_complete($self);
        }
        my ($bytes, $mode, $close, $length) = serialize_response($rq->[STATUS],
          $rq->[HEADERS], $rq->[FLAGS], $body);
        return Future->fail("http.response.start: $mode\n") unless defined $bytes;
        # The app's own Content-Length must match: a wrong one would desynchronise
        # the connection for the next response
        return Future->fail("http.response.body: " . length($body)
          . " bytes of body for a Content-Length of $length\n")
          if $mode == M_LENGTH && $length != length $body;
        $self->[CFG][DEBUG] and $self->[SERVER]->log(debug => "response $rq->[STATUS]: fast path");
        $rq->[HEAD_SENT] = 1;
        $self->[KEEP] = 0 if $close;
        $rq->[SENT_BYTES] += length $body if $mode;
        # Inside a read (the usual case) the bytes only join the output buffer
        if ($self->[CORKED]) { $self->[WBUF] .= $bytes } else { $self->_write($bytes) }
        return _response_complete($self);
      }
      my $err = $self->_write_head;
      return Future->fail($err) if $err;
    }
    if (length $body and my $err = $self->_write_body($body)) {
      return Future->fail("http.response.body: $err\n");
    }
    return $self->_end_body unless $more;
    return $self->_send_future;
  }
  if ($type eq 'http.response.start') {
    if ($rq->[STARTED]) {
      return _after_complete($self, $type) if $rq->[COMPLETE];
      return Future->fail("http.response.start sent twice\n");
    }
    # Its fields: a bad status, a bad shape or bad header bytes fail this send, though
    # the head is written later. (EventValidator's start_error is this check, the
    # codec's: called here without a sub of ours around it, on the busiest path)
    if (defined(my $err = check_headers($ev->{headers}, $ev->{status}))) {
      return Future->fail("http.response.start: $err\n");
    }
    my $headers = $ev->{headers} // [];
    # A body that will be neither read nor drained (too big, or its client still waits
    # for "100 Continue") leaves this connection unusable: say so in this response
    $self->[KEEP] = 0 if $rq->[BODY_OPEN] && !$self->_can_drain;
    my $flags = $rq->[RFLAGS];
    $flags |= F_CLOSE if !$self->[KEEP];
    @$rq[STATUS, HEADERS, FLAGS, TRAILERS, STARTED] = (0 + $ev->{status}, $headers, $flags,
      $ev->{trailers} ? 1 : 0, 1);
    $rq->[CSTATE][CS_STARTED] = 1;
    return $DONE;
  }
  if ($type eq 'http.response.trailers') {
    return Future->fail("http.response.trailers without trailers => 1 in http.response.start\n")
      unless $rq->[STARTED] && $rq->[TRAILERS];
    return _after_complete($self, $type) if $rq->[COMPLETE];
    # (its fields, whatever the framing: fields that are dropped must be valid too)
    if (defined(my $err = trailers_error($ev))) { return Future->fail("$err\n") }
    my $err = (!$rq->[HEAD_SENT] && $self->_write_head) || $self->_write_trailers($ev->{headers} // []);
    return Future->fail($err) if $err;
    return $self->_response_complete;
  }
  if ($type eq 'http.fullflush') {
    # (an extension: an error unless the server advertises it)
    return Future->fail("unsupported event type '$type' (the extension is not advertised)\n")
      unless $self->[CFG][FULLFLUSH];
    $self->_flush;
    return $self->_send_future;
  }
  return Future->fail(send_error(http => $ev) . "\n");
}

# A send after the response completed: an error when sends are checked strictly
# (development), else ignored with a debug line (upstream's production behaviour)
sub _after_complete ($self, $type) {
  return Future->fail("$type after the response was complete\n") if $self->[CFG][STRICT_SENDS];
  $self->[CFG][DEBUG] and $self->[SERVER]->log(debug => "$type after the response was complete: ignored");
  return $DONE;
}

# The response path's protocol hooks, HTTP/1.1's (an HTTP/2 stream has its own:
# PAGI::Server::Connection::HTTP2::Stream): the head of a streamed response, its
# trailers, the end of a chunked body. (Its whole-response writer is inline in _send,
# the hot path; another protocol puts its own in the connection's field WHOLE.)

# The trailers (http.response.trailers) end a chunked body; a body framed otherwise
# has no place for them on HTTP/1.1. Returns an error message or ''.
sub _write_trailers ($self, $headers) {
  return '' if $self->[RQ][RESP_MODE] != M_CHUNKED;
  my ($bytes, $msg) = serialize_trailers($headers);
  return "http.response.trailers: $msg\n" unless defined $bytes;
  $self->_write($bytes);
  return '';
}

# Writes the response head for the streaming path; returns an error message or ''
sub _write_head ($self) {
  my $rq = $self->[RQ];
  my ($bytes, $mode, $close, $length) = serialize_response($rq->[STATUS],
    $rq->[HEADERS], $rq->[FLAGS], undef);
  return "http.response.start: $mode\n" unless defined $bytes;
  $self->[CFG][DEBUG] and $self->[SERVER]->log(debug => "response $rq->[STATUS]: general path");
  @$rq[HEAD_SENT, RESP_MODE, RESP_LEFT] = (1, $mode, $length);
  $self->[KEEP] = 0 if $close;
  $self->_write($bytes);
  return '';
}

# Writes body bytes in the response's framing; returns an error message or ''
sub _write_body ($self, $body) {
  my $rq = $self->[RQ];
  my $mode = $rq->[RESP_MODE];
  return '' if $mode == M_NONE;
  my $err = '';
  if ($mode == M_LENGTH) {
    # Never more than the announced length: the rest would be read as a response
    my $left = $rq->[RESP_LEFT];
    if (length $body > $left) {
      $err = (length($body) - $left) . " bytes beyond the Content-Length were dropped";
      $body = substr($body, 0, $left);
      $self->[KEEP] = 0;
    }
    $rq->[RESP_LEFT] -= length $body;
  }
  $rq->[SENT_BYTES] += length $body;
  $self->_write($mode == M_CHUNKED ? serialize_chunk($body) : $body);
  return $err;
}

# The app's last body bytes were written: finish the framing, or fail a body that fell
# short of its Content-Length (the connection cannot be reused: close it)
sub _end_body ($self) {
  my $rq = $self->[RQ];
  if ($rq->[RESP_MODE] == M_LENGTH && $rq->[RESP_LEFT]) {
    my $short = $rq->[RESP_LEFT];
    $self->[SERVER]->log(error => "response body ended $short bytes short of its Content-Length; closing");
    $self->_cut_short;
    return Future->fail("http.response.body: the body ended $short bytes short of its Content-Length\n");
  }
  return $DONE if $rq->[TRAILERS];    # http.response.trailers completes it
  $self->_end_chunks;
  return $self->_response_complete;
}

# A chunked body ends (the one place its last chunk is written)
sub _end_chunks ($self) {
  $self->_write(LAST_CHUNK) if $self->[RQ][RESP_MODE] == M_CHUNKED;
}

# A send's Future: done now, unless the socket is backed up
sub _send_future ($self) {
  return $DONE if length $self->[WBUF] < $self->[WRITE_HIGH];
  return $self->[DRAIN] //= Future->new;
}

# A file or filehandle body (its fields checked: body_error)
sub _send_file ($self, $ev) {
  my $rq = $self->[RQ];
  my ($fh, $close_fh);
  if (defined $ev->{file}) {
    open($fh, '<:raw', $ev->{file})
      or return Future->fail("http.response.body: cannot open $ev->{file}: $!\n");
    $close_fh = 1;
  }
  else { $fh = $ev->{fh} }
  my $offset = $ev->{offset} // 0;
  my $length = $ev->{length};
  if ($offset) {
    seek($fh, $offset, 0) or return Future->fail("http.response.body: cannot seek: $!\n");
  }
  if (!$rq->[HEAD_SENT]) {
    # A file's length is known: frame it with Content-Length unless the app did
    if (-f $fh) {
      my $size = (-s _) - $offset;
      $size = 0 if $size < 0;
      $size = $length if defined $length && $length < $size;
      $rq->[HEADERS] = [@{$rq->[HEADERS]}, ['content-length', $size]]
        unless grep { lc $_->[0] eq 'content-length' } @{$rq->[HEADERS]};
    }
    my $err = $self->_write_head;
    return Future->fail($err) if $err;
  }
  return _pump_file($self, $fh, $length, $close_fh);
}

# Streams a file in chunks, waiting for the socket to drain between them
sub _pump_file ($self, $fh, $left, $close_fh) {
  my $rq = $self->[RQ];
  my $done = Future->new;
  my $step;
  $step = sub {
    while ($rq->[CSTATE][CS_CONNECTED]) {
      my $want = FILE_CHUNK;
      $want = $left if defined $left && $left < $want;
      my $n = $want ? read($fh, my $buf, $want) : 0;
      if (!defined $n) {
        close $fh if $close_fh;
        undef $step;
        my $why = "$!";
        $self->[SERVER]->log(error => "response body: reading the file failed ($why); closing");
        $self->_cut_short;
        return $done->fail("http.response.body: read failed: $why\n");
      }
      if ($n == 0) {
        close $fh if $close_fh;
        undef $step;
        my $end = $self->_end_body;
        return $end->is_failed ? $done->fail($end->failure) : $done->done;
      }
      $left -= $n if defined $left;
      $self->_write_body($buf);
      my $wait = $self->_send_future;
      if (!$wait->is_ready) {
        $wait->on_ready(sub { $step->() if $step });
        return;
      }
    }
    close $fh if $close_fh;
    undef $step;
    $done->done unless $done->is_ready;
  };
  $step->();
  return $done;
}

# The final body bytes (or the trailers) are written: tell pagi.connection, log the
# request, and go on to the next request if the app has returned
sub _response_complete ($self) {
  my $rq = $self->[RQ];
  $rq->[COMPLETE] = 1;
  my $cstate = $rq->[CSTATE];
  # Callbacks are rare: skip the method call without them
  if ($cstate->[CS_ON_COMPLETE] || $cstate->[CS_ON_DISCONNECT]) { $cstate->_complete }
  else { $cstate->[CS_COMPLETE] = 1 }
  $self->_access_log if $self->[LIVE][ACCESS_LOGGER];
  if (my $f = delete $rq->[RECV_WAIT]) { $f->done({type => 'http.disconnect'}) }
  $self->_next_request unless $rq->[APP_RUNNING];
  return $DONE;
}

1;

=head1 NAME

PAGI::Server::Connection::Response - the response path of PAGI::Server's HTTP connections

=head1 DESCRIPTION

Internal. The C<http.response.start>, C<http.response.body> (bytes, C<file> or
C<fh>, with C<more>) and C<http.response.trailers> events of an C<http> scope:
checked (their fields by L<PAGI::Server::EventValidator>'s checks), serialized by
L<PAGI::Server::Protocol::HTTP1> and written to the connection. A response whose start is followed by one final body is serialized into
one buffer and written with one write (the fast path); at log level C<debug> each
response says which path it took. An app's own C<Content-Length> is held to: more
bytes fail the send and never reach the wire, fewer close the connection. Its subs
are methods of L<PAGI::Server::Connection>, which imports them; the state they keep
is the request's record (L<PAGI::Server::Connection::Request>).

=cut
