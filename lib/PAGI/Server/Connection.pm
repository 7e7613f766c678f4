package PAGI::Server::Connection;
use strict;
use warnings;
use experimental 'signatures';
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use Scalar::Util qw(blessed);
use Socket qw(SHUT_WR);
use Future;
use PAGI::Server::Protocol::HTTP1;
use PAGI::Server::ConnectionState qw(:fields);
use PAGI::Server::Connection::Fields;
use PAGI::Server::Transport;

our $VERSION = '0.001';

# One object per accepted connection: IO::Async glue and PAGI events. The bytes go
# through PAGI::Server::Protocol::HTTP1, which is the only place that knows whether
# the codec is Rust or Perl.
#
# On the request path, subs that no subclass overrides are called as functions
# (_start_request($self, ...): no method lookup). The ones the WebSocket and SSE
# classes override (_process_input, _receive, _send, _app_done, _disconnect, _on_eof,
# _half_close_ok, _tick, _shutdown) are always called as methods.

BEGIN {
  *parse_request      = \&PAGI::Server::Protocol::HTTP1::parse_request;
  *decode_chunked     = \&PAGI::Server::Protocol::HTTP1::decode_chunked;
  *serialize_response = \&PAGI::Server::Protocol::HTTP1::serialize_response;
  *check_headers      = \&PAGI::Server::Protocol::HTTP1::check_headers;
  *serialize_chunk    = \&PAGI::Server::Protocol::HTTP1::serialize_chunk;
  *serialize_trailers = \&PAGI::Server::Protocol::HTTP1::serialize_trailers;
  # The codec's named numbers, defined in the facade
  no strict 'refs';
  *$_ = \&{"PAGI::Server::Protocol::HTTP1::$_"} for qw(F_HEAD F_CLOSE F_HTTP10 M_NONE M_LENGTH
    M_CHUNKED M_CLOSE CHUNK_SIZE CHUNK_DONE);
}

# Phases of the connection
use constant {
  IDLE    => 0,    # waiting for (more of) a request head
  REQUEST => 1,    # a request is being served (its body may still be arriving)
  CLOSING => 2,    # flushing the last bytes, then closing
  CLOSED  => 3,
};

use constant READ_SIZE      => 65536;
use constant MAX_PIPELINE   => 1 << 20;     # stop reading ahead beyond this much unparsed input
use constant BODY_HIGH      => 1 << 20;     # body bytes queued for the app before we pause reading
use constant WRITE_HIGH     => 1 << 18;     # $send waits for the socket above this much queued output
use constant WRITE_LOW      => 1 << 16;
use constant DRAIN_BODY_MAX => 1 << 16;     # unread request body we read and drop to keep a connection
use constant LINGER_SECONDS => 2;
use constant FILE_CHUNK     => 1 << 16;

# The facts of a request with none beyond the scope keys (read-only: shared)
my $NO_FACTS = [];
Internals::SvREADONLY(@$NO_FACTS, 1);

my $CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n";

# Connection objects alive (made and not yet freed): for leak checks
our $LIVE = 0;
sub DESTROY { $LIVE-- }

# What a send that needs no waiting returns: one shared, already-done Future (a done
# Future is immutable to its users; this saves two allocations per send). Its class
# has that one instance, so it answers the two questions `await` asks at once,
# instead of through Future's generic AWAIT_* wrappers (two method calls less per
# await); what Future's methods build from it (->then, ...) is a plain Future.
our $DONE = bless Future->done, 'PAGI::Server::Connection::Done';
{
  package PAGI::Server::Connection::Done;
  our @ISA = ('Future');
  sub new { shift; Future->new(@_) }
  sub AWAIT_IS_READY { 1 }
  sub AWAIT_GET { return }
  { no warnings 'once'; *AWAIT_RESULT = \&AWAIT_GET; }
}

sub new ($class, $server, $fh, $tls = undef) {
  my $self = bless [], $class;
  @$self[SERVER, LOOP, FH, FD, RBUF, WBUF, PHASE, EOF, READING, KEEP]
    = ($server, $server->{loop}, $fh, fileno($fh), '', '', IDLE, 0, 1, 0);

  # Connection info is read once and shared by every scope on this connection
  my $info = PAGI::Server::Protocol::HTTP1::connection_info($self->[FD]) || [];
  $self->[CLIENT]      = defined $info->[0] ? [$info->[0], $info->[1]] : undef;
  $self->[SERVER_ADDR] = [$info->[2], $info->[3]];

  # The per-connection callbacks, made once; request state lives in fields. They hold
  # the connection itself, not a weak reference (a weakly referenced array is magical,
  # which makes every field access slower): _close breaks these cycles, and a callback
  # that an app keeps longer finds a closed connection.
  $self->[RECEIVE]  = sub { $self->_receive };
  # HTTP's $send calls its method as a function (no method lookup; the closure stays
  # small: a closure's own lexicals are copied per connection, buffers and all); the
  # WebSocket and SSE classes install a method-dispatching one (_dispatch_send)
  $self->[SEND]     = sub { _send($self, $_[0]) };
  # (a function call: _on_read is never overridden; TLS replaces this callback)
  $self->[ON_READ]  = sub { _on_read($self) };
  $self->[ON_WRITE] = sub { $self->_on_write };
  $LIVE++;
  if ($tls) {
    # A TLS handle (IO::Socket::SSL): the scope's tls extension, TLS-aware callbacks
    $self->[TLS] = $tls;
    PAGI::Server::TLS::setup_connection($self);
  }

  $self->[DEADLINE]      = $PAGI::Server::NOW + $server->{keepalive_timeout};
  $self->[DEADLINE_KIND] = 'idle';
  $self->[LOOP]->watch_io(handle => $fh, on_read_ready => $self->[ON_READ]);
  return $self;
}

# ---- reading -------------------------------------------------------------------

sub _on_read ($self) {
  my $n = sysread($self->[FH], $self->[RBUF], READ_SIZE, length $self->[RBUF]);
  if (!defined $n) {
    if ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR) {
      PAGI::Server::TLS::again($self, 'read') if $self->[TLS];
      return;
    }
    return $self->_abort('read_error');
  }
  if ($n == 0) { return $self->_on_eof }
  my $phase = $self->[PHASE];
  if ($phase == CLOSING) { $self->[RBUF] = ''; return }    # lingering: drop input
  $self->[DEADLINE] = $PAGI::Server::NOW + $self->[SERVER]{timeout}
    if $self->[DEADLINE_KIND] eq 'body';
  # Responses made while this input is processed (pipelined requests, sync apps)
  # are collected and written with one syscall at the end
  return if $self->[IN_PROCESS];
  $self->[CORKED] = $self->[IN_PROCESS] = 1;
  $self->_process_input;
  $self->[CORKED] = $self->[IN_PROCESS] = 0;
  return if !length $self->[WBUF] || $self->[WWATCH] || $self->[PHASE] == CLOSED;

  # Write what was collected
  my $wrote = syswrite($self->[FH], $self->[WBUF]);
  if (defined $wrote && $wrote == length $self->[WBUF]) { $self->[WBUF] = '' }
  else {
    # Short or failed: _write queues the rest (or meets the error again and handles it)
    my $rest = defined $wrote ? substr($self->[WBUF], $wrote) : $self->[WBUF];
    $self->[WBUF] = '';
    $self->_write($rest);
  }
  # A send may be waiting for the buffer that was just written
  $self->_released if length $self->[WBUF] < WRITE_LOW
    && ($self->[DRAIN] || $self->[TRANSPORT] && $self->[TRANSPORT]{above});
  $self->_finish_close if $self->[PHASE] == CLOSING && !length $self->[WBUF];
}

sub _on_eof ($self) {
  $self->[EOF] = 1;
  $self->_pause_read;
  my $phase = $self->[PHASE];
  if ($phase == CLOSING) { return $self->_close }
  # Complete pipelined heads are still served; a partial one is dropped
  return $self->_process if $phase == IDLE;
  # The client went away while its request was being served (PAGI: FIN = disconnect).
  # One that only half-closed after a complete request (`nc -N`, shutdown(SHUT_WR))
  # may still read: the app is told it has gone, but the response is still written.
  if ($self->[BODY_DONE] && $self->_half_close_ok) {
    $self->[KEEP] = 0;
    $self->[HALF_CLOSED] = 1;
    return $self->_disconnect('client_closed');
  }
  $self->_abort('client_closed');
}

# Streams (SSE) need the end of input as their disconnect signal; plain HTTP does not
sub _half_close_ok ($self) { 1 }

sub _pause_read ($self) {
  return unless $self->[READING];
  $self->[READING] = 0;
  $self->[LOOP]->unwatch_io(handle => $self->[FH], on_read_ready => 1);
}

sub _resume_read ($self) {
  return if $self->[READING] || $self->[EOF] || $self->[PHASE] == CLOSED;
  $self->[READING] = 1;
  $self->[LOOP]->watch_io(handle => $self->[FH], on_read_ready => $self->[ON_READ]);
}

# Parses what is buffered: a new request head, or more of the current body.
# Not re-entered: a request that completes synchronously inside it (the app answered
# at once) only flips the phase back to IDLE, and this loop takes the next pipelined
# head, so the stack stays flat however many requests are queued.
sub _process ($self) {
  # Not re-entered: a request finished inside the loop is followed by the loop itself
  return if $self->[IN_PROCESS];
  $self->[IN_PROCESS] = 1;
  $self->_process_input;
  $self->[IN_PROCESS] = 0;
}

sub _process_input ($self) {
  my $server = $self->[SERVER];
  while (1) {
    if ($self->[PHASE] == IDLE) {
      return $self->[EOF] ? $self->_close : undef unless length $self->[RBUF];
      my ($req, $consumed) = parse_request($self->[RBUF], @{$server->{parse_limits}});
      if (!defined $req) {
        # The head timeout runs from its first byte, so trickling bytes cannot extend it
        if ($self->[DEADLINE_KIND] ne 'head') {
          $self->[DEADLINE_KIND] = 'head';
          $self->[DEADLINE]      = $PAGI::Server::NOW + $server->{header_timeout};
        }
        return $self->_close if $self->[EOF];    # this head will never complete
        return;
      }
      if (exists $req->{error}) {
        return $self->_wire_error(
          PAGI::Server::Protocol::HTTP1::error_status($req->{error}), $req->{message});
      }
      substr($self->[RBUF], 0, $consumed, '');
      _start_request($self, $req);
      next;
    }
    return if $self->[PHASE] != REQUEST;
    if ($self->[BODY_MODE] && length $self->[RBUF]) {
      $self->_feed_body;
      next if $self->[PHASE] == IDLE;    # a drained body finished the request
    }
    # Bytes beyond this request wait (pipelining); stop reading if too many pile up
    $self->_pause_read if length $self->[RBUF] > MAX_PIPELINE;
    return;
  }
}

# ---- one request ---------------------------------------------------------------

sub _start_request ($self, $req) {
  my $server = $self->[SERVER];
  # The parser's result becomes the scope: its six always-present keys are named as
  # the scope names them, and the other facts (a body, close, an upgrade: only
  # present when set) are taken out first (doc/codec.md). A plain request (a
  # keep-alive GET) has none, and skips every check below that needs them.
  my $plain = keys %$req == 6;
  my $facts = $NO_FACTS;
  if (!$plain) {
    # (an array in PAGI::Server::Connection::Fields' FACT_* order)
    $facts = [delete @$req{@PAGI::Server::Connection::Fields::FACT_KEYS}];
  }
  my $scope = $req;
  @$scope{qw(type pagi scheme root_path client server state extensions pagi.transport)} = (
    'http', {version => '0.3', spec_version => '0.3'}, $server->{scheme}, $server->{root_path}, $self->[CLIENT],
    $self->[SERVER_ADDR], {%{$server->{state}}}, $self->[TLS] ? {tls => $self->[TLS]} : {},
    $self->[TRANSPORT] //= PAGI::Server::Transport->new($self, WRITE_HIGH, WRITE_LOW));
  if (!$plain && defined $facts->[FACT_UPGRADE] && $facts->[FACT_UPGRADE] eq 'websocket'
    && $req->{method} eq 'GET' && $req->{http_version} eq '1.1') {
    return PAGI::Server::Connection::WebSocket::_start($self, $scope, $facts);
  }
  # The per-request fields, reset in one slice. started: http.response.start seen;
  # continued: "100 Continue" written; head_sent: head bytes written; complete: the
  # final body/trailers written; body_final: the app has been given more => 0;
  # cstate: the pagi.connection object (ConnectionState->new, without the call);
  # rflags: the response's framing flags known now (an app may edit its scope)
  @$self[PHASE, REQ, FACTS, DEADLINE_KIND, STARTED, CONTINUED, HEAD_SENT, COMPLETE,
    APP_RUNNING, BODY_BUF, BODY_SEEN, BODY_FINAL, SENT_BYTES, STATUS, RECV_WAIT, BODY_MODE,
    BODY_DONE, CSTATE, RFLAGS]
    = (REQUEST, $req, $facts, '', 0, 0, 0, 0, 1, '', 0, 0, 0, 0, undef, 0, 1,
    bless([1, 0, 0], 'PAGI::Server::ConnectionState'),
    ($req->{method} eq 'HEAD' ? F_HEAD : 0) | ($req->{http_version} eq '1.0' ? F_HTTP10 : 0));
  $self->[REQ_TIME] = $server->{access_log} ? $server->_hires_time : 0;
  $self->[KEEP]     = ($plain || !$facts->[FACT_CLOSE]) && !$server->{stopping};

  if (!$plain) {
    # Request body framing, decided by the parser in its single pass
    my $mode = 0;
    if ($facts->[FACT_CHUNKED]) {
      $mode = 2;
      $self->[CHUNK_STATE] = CHUNK_SIZE;
    }
    elsif (my $cl = $facts->[FACT_CONTENT_LENGTH]) {
      if ($server->{max_body_size} && $cl > $server->{max_body_size}) {
        return $self->_wire_error(413, 'request body too large');
      }
      $mode = 1;
      $self->[BODY_LEFT] = $cl;
    }
    if ($mode) {
      @$self[BODY_MODE, BODY_DONE, DEADLINE_KIND, DEADLINE]
        = ($mode, 0, 'body', $PAGI::Server::NOW + $server->{timeout});
      $self->_feed_body if length $self->[RBUF];
      return if $self->[PHASE] != REQUEST;    # the body was already rejected
    }
    if ($facts->[FACT_SSE]) {
      # Accept: text/event-stream makes any method an SSE stream
      bless $self, 'PAGI::Server::Connection::SSE';
      $self->_dispatch_send;
      $scope->{type} = 'sse';
      return $self->_call_app($scope);
    }
  }
  $scope->{'pagi.connection'} = $self->[CSTATE];
  _call_app($self, $scope);
}

# For the WebSocket and SSE classes: a $send that calls their _send method
sub _dispatch_send ($self) {
  $self->[SEND] = sub { $self->_send($_[0]) };
}

sub _call_app ($self, $scope) {
  my $f = eval { $self->[SERVER]{app}->($scope, $self->[RECEIVE], $self->[SEND]) };
  if (ref $f eq 'Future') { }    # the usual case, checked first
  elsif (!$f) { $f = Future->fail($@ || "application did not return a Future\n") }
  elsif (!(blessed $f && $f->can('on_ready'))) {
    $f = Future->fail("application returned a non-Future value\n");
  }
  # Plain HTTP's usual case: the app is done and its response complete (what
  # _app_done would find first), so straight to the next request
  if ($self->[COMPLETE] && ref $self eq __PACKAGE__ && $f->is_done
    && $self->[CSTATE][CS_CONNECTED]) {
    $self->[APP_RUNNING] = 0;
    return _next_request($self);
  }
  if ($f->is_ready) { return $self->_app_done($f) }
  # (the callback holds the connection until the app finishes, closed or not)
  $self->[APP_FUTURE] = $f;
  $f->on_ready(sub { $self->_app_done($_[0]) });
}

# Moves request body bytes from the read buffer to the app's queue
sub _feed_body ($self) {
  my $server = $self->[SERVER];
  my $got;
  if ($self->[BODY_MODE] == 1) {
    my $take = length $self->[RBUF];
    $take = $self->[BODY_LEFT] if $take > $self->[BODY_LEFT];
    return unless $take;
    $got = substr($self->[RBUF], 0, $take, '');
    $self->[BODY_LEFT] -= $take;
    $self->[BODY_DONE] = 1 if !$self->[BODY_LEFT];
  }
  else {
    my ($data, $consumed, $state)
      = decode_chunked($self->[RBUF], $self->[CHUNK_STATE], $server->{max_header_size});
    if (ref $data) {
      return $self->_body_error(PAGI::Server::Protocol::HTTP1::error_status($data->{error}),
        $data->{message}, 'protocol_error');
    }
    substr($self->[RBUF], 0, $consumed, '');
    $self->[CHUNK_STATE] = $state;
    $self->[BODY_DONE]   = 1 if $state == CHUNK_DONE;
    $got = $data;
  }
  $self->[BODY_SEEN] += length $got;
  if ($server->{max_body_size} && $self->[BODY_SEEN] > $server->{max_body_size}) {
    return $self->_body_error(413, 'request body too large', 'body_too_large');
  }
  if ($self->[BODY_DONE]) {
    $self->[BODY_MODE]     = 0;
    $self->[DEADLINE_KIND] = '';
  }
  if ($self->[DRAINING]) {
    return $self->_next_request if $self->[BODY_DONE];
    return $self->_resume_read;
  }
  # No new bytes (a partial chunk-size line): no empty event for the app
  return unless length $got || $self->[BODY_DONE];
  $self->[BODY_BUF] .= $got;
  $self->_pause_read if length $self->[BODY_BUF] > BODY_HIGH;
  $self->_deliver_body if $self->[RECV_WAIT];
}

# The request body is invalid or too large: answer if we still can, then close
sub _body_error ($self, $status, $message, $reason) {
  $self->[KEEP] = 0;
  if (!$self->[STARTED] && !$self->[COMPLETE]) {
    # Answer first: the disconnect resumes the app at once, and an app that returns
    # then must find the connection already closing, or it would just close it
    $self->_wire_error($status, $message);
    return $self->_disconnect($reason);
  }
  $self->_abort($reason);
}

sub _receive ($self) {
  my $cstate = $self->[CSTATE];
  # After the response is complete the next event is the disconnect, read or not
  return Future->done({type => 'http.disconnect'})
    if !$cstate || !$cstate->[CS_CONNECTED] || $self->[COMPLETE];
  if ($self->[BODY_FINAL]) {
    # The body was delivered; the next event is the disconnect
    return $self->[RECV_WAIT] //= Future->new;
  }
  if ($self->[FACTS][FACT_EXPECT_CONTINUE] && !$self->[CONTINUED] && !$self->[STARTED]) {
    $self->[CONTINUED] = 1;
    $self->_write($CONTINUE);
  }
  if ($self->[BODY_DONE] || length $self->[BODY_BUF]) {
    my $body = $self->[BODY_BUF];
    $self->[BODY_BUF] = '';
    $self->_resume_read if !$self->[READING] && $self->[PHASE] == REQUEST;
    $self->[BODY_FINAL] = $self->[BODY_DONE];
    return Future->done({type => 'http.request', body => $body, more => $self->[BODY_DONE] ? 0 : 1});
  }
  return $self->[RECV_WAIT] //= Future->new;
}

sub _deliver_body ($self) {
  my $f = delete $self->[RECV_WAIT];
  return if $self->[BODY_FINAL];
  my $body = $self->[BODY_BUF];
  $self->[BODY_BUF]   = '';
  $self->[BODY_FINAL] = $self->[BODY_DONE];
  $f->done({type => 'http.request', body => $body, more => $self->[BODY_DONE] ? 0 : 1});
}

# ---- responses -----------------------------------------------------------------

# HTTP's send (SSE sends its HTTP events through it too)
sub _send ($self, $ev) {
  my $cstate = $self->[CSTATE];
  return $DONE if !$cstate || !$cstate->[CS_CONNECTED] && !$self->[HALF_CLOSED];
  my $type = ref $ev eq 'HASH' ? $ev->{type} // '' : '';
  if ($type eq 'http.response.body') {
    return Future->fail("http.response.body before http.response.start\n") unless $self->[STARTED];
    return Future->fail("$type after the response was complete\n") if $self->[COMPLETE];
    if (defined $ev->{file} || defined $ev->{fh}) { return $self->_send_file($ev) }
    my $body = $ev->{body} // '';
    if (utf8::is_utf8($body)) {
      # Only the representation may be upgraded; characters above 0xFF are not bytes
      utf8::downgrade($body, 1) or return Future->fail("http.response.body: body must be bytes, not characters\n");
    }
    my $more = $ev->{more} // $ev->{more_body};
    if (!$self->[HEAD_SENT]) {
      if (!$more && !$self->[TRAILERS]) {
        # Fast path: head and body in one buffer, one write
        my ($bytes, $mode, $close, $length) = serialize_response($self->[STATUS],
          $self->[HEADERS], $self->[FLAGS], $body);
        return Future->fail("http.response.start: $mode\n") unless defined $bytes;
        # The app's own Content-Length must match: a wrong one would desynchronise
        # the connection for the next response
        return Future->fail("http.response.body: " . length($body)
          . " bytes of body for a Content-Length of $length\n")
          if $mode == M_LENGTH && $length != length $body;
        $self->[SERVER]{debug} and $self->[SERVER]->log(debug => "response $self->[STATUS]: fast path");
        $self->[HEAD_SENT] = 1;
        $self->[KEEP] = 0 if $close;
        $self->[SENT_BYTES] += length $body if $mode;
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
    return Future->fail("http.response.start sent twice\n") if $self->[STARTED];
    my $status = $ev->{status};
    return Future->fail("http.response.start: status must be an integer\n")
      unless defined $status && !ref $status && $status =~ /\A[0-9]+\z/;
    my $headers = $ev->{headers} // [];
    # A bad shape or bad header bytes fail this send, though the head is written later
    if (defined(my $err = check_headers($headers))) {
      return Future->fail("http.response.start: $err\n");
    }
    # A body that will be neither read nor drained (too big, or its client still waits
    # for "100 Continue") leaves this connection unusable: say so in this response
    $self->[KEEP] = 0 if !$self->[BODY_DONE] && !$self->_can_drain;
    my $flags = $self->[RFLAGS];
    $flags |= F_CLOSE if !$self->[KEEP];
    $self->[STATUS]   = 0 + $status;
    $self->[HEADERS]  = $headers;
    $self->[FLAGS]    = $flags;
    $self->[TRAILERS] = $ev->{trailers} ? 1 : 0;
    $self->[STARTED]  = 1;
    $self->[CSTATE][CS_STARTED] = 1;
    return $DONE;
  }
  if ($type eq 'http.response.trailers') {
    return Future->fail("http.response.trailers without trailers => 1 in http.response.start\n")
      unless $self->[STARTED] && $self->[TRAILERS];
    return Future->fail("$type after the response was complete\n") if $self->[COMPLETE];
    my $err = !$self->[HEAD_SENT] && $self->_write_head;
    return Future->fail($err) if $err;
    if ($self->[RESP_MODE] == M_CHUNKED) {
      my ($bytes, $msg) = serialize_trailers($ev->{headers} // []);
      return Future->fail("http.response.trailers: $msg\n") unless defined $bytes;
      $self->_write($bytes);
    }
    return $self->_response_complete;
  }
  return Future->fail("unsupported event type '$type' (the extension is not advertised)\n")
    if $type eq 'http.fullflush';
  return Future->fail("unknown event type '$type' for an http scope\n");
}

# Writes the response head for the streaming path; returns an error message or ''
sub _write_head ($self) {
  my ($bytes, $mode, $close, $length) = serialize_response($self->[STATUS],
    $self->[HEADERS], $self->[FLAGS], undef);
  return "http.response.start: $mode\n" unless defined $bytes;
  $self->[SERVER]{debug} and $self->[SERVER]->log(debug => "response $self->[STATUS]: general path");
  $self->[HEAD_SENT] = 1;
  $self->[RESP_MODE] = $mode;
  $self->[RESP_LEFT] = $length;
  $self->[KEEP] = 0 if $close;
  $self->_write($bytes);
  return '';
}

# Writes body bytes in the response's framing; returns an error message or ''
sub _write_body ($self, $body) {
  my $mode = $self->[RESP_MODE];
  return '' if $mode == M_NONE;
  my $err = '';
  if ($mode == M_LENGTH) {
    # Never more than the announced length: the rest would be read as a response
    my $left = $self->[RESP_LEFT];
    if (length $body > $left) {
      $err = (length($body) - $left) . " bytes beyond the Content-Length were dropped";
      $body = substr($body, 0, $left);
      $self->[KEEP] = 0;
    }
    $self->[RESP_LEFT] -= length $body;
  }
  $self->[SENT_BYTES] += length $body;
  $self->_write($mode == M_CHUNKED ? serialize_chunk($body) : $body);
  return $err;
}

# The app's last body bytes were written: finish the framing, or fail a body that fell
# short of its Content-Length (the connection cannot be reused: close it)
sub _end_body ($self) {
  if ($self->[RESP_MODE] == M_LENGTH && $self->[RESP_LEFT]) {
    my $short = $self->[RESP_LEFT];
    $self->[SERVER]->log(error => "response body ended $short bytes short of its Content-Length; closing");
    $self->_cut_short;
    return Future->fail("http.response.body: the body ended $short bytes short of its Content-Length\n");
  }
  return $DONE if $self->[TRAILERS];    # http.response.trailers completes it
  $self->_write("0\r\n\r\n") if $self->[RESP_MODE] == M_CHUNKED;
  return $self->_response_complete;
}

# A send's Future: done now, unless the socket is backed up
sub _send_future ($self) {
  return $DONE if length $self->[WBUF] < WRITE_HIGH;
  return $self->[DRAIN] //= Future->new;
}

sub _send_file ($self, $ev) {
  my ($fh, $close_fh);
  if (defined $ev->{file}) {
    open($fh, '<:raw', $ev->{file})
      or return Future->fail("http.response.body: cannot open $ev->{file}: $!\n");
    $close_fh = 1;
  }
  else {
    $fh = $ev->{fh};
    return Future->fail("http.response.body: fh is not an open filehandle\n")
      unless ref $fh && defined fileno($fh);
  }
  my $offset = $ev->{offset} // 0;
  my $length = $ev->{length};
  return Future->fail("http.response.body: offset and length must be non-negative integers\n")
    if $offset !~ /\A[0-9]+\z/ || defined $length && $length !~ /\A[0-9]+\z/;
  if ($offset) {
    seek($fh, $offset, 0) or return Future->fail("http.response.body: cannot seek: $!\n");
  }
  if (!$self->[HEAD_SENT]) {
    # A file's length is known: frame it with Content-Length unless the app did
    if (-f $fh) {
      my $size = (-s _) - $offset;
      $size = 0 if $size < 0;
      $size = $length if defined $length && $length < $size;
      $self->[HEADERS] = [@{$self->[HEADERS]}, ['content-length', $size]]
        unless grep { lc $_->[0] eq 'content-length' } @{$self->[HEADERS]};
    }
    my $err = $self->_write_head;
    return Future->fail($err) if $err;
  }
  return $self->_pump_file($fh, $length, $close_fh);
}

# Streams a file in chunks, waiting for the socket to drain between them
sub _pump_file ($self, $fh, $left, $close_fh) {
  my $done = Future->new;
  my $step;
  $step = sub {
    while ($self->[CSTATE] && $self->[CSTATE][CS_CONNECTED]) {
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
      if (length $self->[WBUF] >= WRITE_HIGH) {
        ($self->[DRAIN] //= Future->new)->on_ready(sub { $step->() if $step });
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

sub _response_complete ($self) {
  $self->[COMPLETE] = 1;
  my $cstate = $self->[CSTATE];
  # Callbacks are rare: skip the method call without them
  if ($cstate->[CS_ON_COMPLETE] || $cstate->[CS_ON_DISCONNECT]) { $cstate->_complete }
  else { $cstate->[CS_COMPLETE] = 1 }
  $self->_access_log if $self->[SERVER]{access_log};
  if (my $f = delete $self->[RECV_WAIT]) { $f->done({type => 'http.disconnect'}) }
  $self->_next_request unless $self->[APP_RUNNING];
  return $DONE;
}

sub _app_done ($self, $f) {
  $self->[APP_RUNNING] = 0;
  delete $self->[APP_FUTURE];
  # The usual case first: the app is done and its response complete
  return $self->_next_request
    if $self->[COMPLETE] && $f->is_done && $self->[CSTATE][CS_CONNECTED];
  my $server = $self->[SERVER];
  my $error = $f->is_failed ? ($f->failure)[0] : undef;
  $error = 'cancelled' if !defined $error && $f->is_cancelled;
  my $cstate = $self->[CSTATE];
  if (!$cstate->[CS_CONNECTED]) {
    # The client has gone: no 500, no error log
    return $self->_close_after_flush if $self->[PHASE] == REQUEST;
    return;
  }
  if (defined $error) {
    chomp(my $e = "$error");
    $server->log(error => "application error: $e");
  }
  if (!$self->[STARTED]) {
    $server->log(error => 'application returned without sending a response') unless defined $error;
    $self->[CSTATE][CS_STARTED] = 1;
    $self->_disconnect('server_error', 1);
    return $self->_wire_error(500, 'internal server error');
  }
  if (!$self->[COMPLETE]) {
    $server->log(error => 'application finished without completing its response; closing')
      unless defined $error;
    return $self->_cut_short;
  }
  $self->_next_request;
}

# Can the unread rest of the request body be read and dropped to keep the connection?
sub _can_drain ($self) {
  return $self->[BODY_MODE] == 1 && $self->[BODY_LEFT] <= DRAIN_BODY_MAX
    && !($self->[FACTS][FACT_EXPECT_CONTINUE] && !$self->[CONTINUED]);
}

# Both the response and the app are done: keep-alive or close
sub _next_request ($self) {
  return if $self->[PHASE] != REQUEST;
  if (!$self->[BODY_DONE] && !$self->[DRAINING]) {
    # The app did not read the whole body. A small rest of a Content-Length body is
    # read and dropped to keep the connection; otherwise close. A client still waiting
    # for "100 Continue" will not send its body at all.
    if ($self->[KEEP] && $self->_can_drain) {
      $self->[DRAINING]      = 1;
      $self->[DEADLINE_KIND] = 'body';
      $self->[DEADLINE]      = $PAGI::Server::NOW + $self->[SERVER]{timeout};
      return $self->_feed_body;    # comes back here once the body is done
    }
    $self->[KEEP] = 0;
  }
  @$self[DRAINING, REQ, CSTATE, HEADERS] = (0, undef, undef, undef);
  my $server = $self->[SERVER];
  # max_requests (0 = off): the worker retires after its Nth request
  $server->_retire if ++$server->{served} == $server->{max_requests};
  # A soft stop (a retiring worker) keeps a keep-alive connection for one more request,
  # answered with Connection: close, rather than cut it under a client's next request
  if (!$self->[KEEP] || $server->{stopping} && !$server->{soft}) { return $self->_close_after_flush }
  @$self[PHASE, DEADLINE_KIND, DEADLINE]
    = (IDLE, 'idle', $PAGI::Server::NOW + $server->{keepalive_timeout});
  $self->_resume_read unless $self->[READING];
  # The next pipelined request (when called from inside _process, its loop does it)
  $self->_process if length $self->[RBUF] && !$self->[IN_PROCESS];
}

# ---- writing -------------------------------------------------------------------

sub _write ($self, $data) {
  return if $self->[PHASE] == CLOSED;
  if (length $self->[WBUF] || $self->[CORKED]) {
    $self->[WBUF] .= $data;
    $self->[TRANSPORT]->_high if length $self->[WBUF] >= WRITE_HIGH && $self->[TRANSPORT];
    return;
  }
  my $n = syswrite($self->[FH], $data);
  if (!defined $n) {
    return $self->_abort('write_error') unless $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
    $n = 0;
  }
  return if $n == length $data;
  $self->[WBUF] = substr($data, $n);
  $self->[TRANSPORT]->_high if length $self->[WBUF] >= WRITE_HIGH && $self->[TRANSPORT];
  $self->[WDEADLINE] = $PAGI::Server::NOW + $self->[SERVER]{timeout};
  $self->[WWATCH] = 1;
  $self->[LOOP]->watch_io(handle => $self->[FH], on_write_ready => $self->[ON_WRITE]);
  PAGI::Server::TLS::again($self, 'write') if $self->[TLS];
}

# The output buffer fell below the low mark: release a waiting send
sub _released ($self) {
  $self->[TRANSPORT]->_drain if $self->[TRANSPORT];
  if (my $f = delete $self->[DRAIN]) { $f->done }
}

sub _on_write ($self) {
  my $n = syswrite($self->[FH], $self->[WBUF]);
  if (!defined $n) {
    if ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR) {
      PAGI::Server::TLS::again($self, 'write') if $self->[TLS];
      return;
    }
    return $self->_abort('write_error');
  }
  substr($self->[WBUF], 0, $n, '');
  $self->[WDEADLINE] = $PAGI::Server::NOW + $self->[SERVER]{timeout};
  if (length $self->[WBUF] < WRITE_LOW) {
    $self->_released;
    # That resumed the app, which may have finished and closed us meanwhile
    return if $self->[PHASE] == CLOSED;
  }
  return if length $self->[WBUF];
  $self->[WDEADLINE] = undef;
  $self->[WWATCH] = 0;
  $self->[LOOP]->unwatch_io(handle => $self->[FH], on_write_ready => 1);
  $self->_finish_close if $self->[PHASE] == CLOSING;
}

# ---- errors, disconnects, closing ------------------------------------------------

# The one wire-error builder: a close-delimited text/plain response
sub _wire_error ($self, $status, $message, $headers = []) {
  my $server = $self->[SERVER];
  my $peer = $self->[CLIENT] ? "$self->[CLIENT][0]:$self->[CLIENT][1]" : 'unix socket';
  $server->log(warn => "$peer: $status $message");
  my $reason = PAGI::Server::Protocol::HTTP1::error_reason($status);
  my ($bytes) = serialize_response($status,
    [['Content-Type', 'text/plain; charset=utf-8'], @$headers], F_CLOSE, "$reason\n");
  $self->[STATUS] = $status;
  $self->[SENT_BYTES] = length($reason) + 1;
  $self->_write($bytes);
  $self->_access_log if $server->{access_log} && $self->[REQ];
  $self->[KEEP] = 0;
  $self->_close_after_flush(1);
}

# A response that cannot be finished (its app ended or failed mid-body, its file
# could not be read, its body fell short of its Content-Length): what was written
# still goes out, in order, and then the connection closes without the end of the
# framing (no last chunk; short of the Content-Length), so that the client can tell
# that the response was cut short
sub _cut_short ($self) {
  $self->[KEEP] = 0;
  $self->_disconnect('server_error');
  $self->_close_after_flush(1);
}

# The client is gone or the connection is broken: tell the app, stop everything
sub _abort ($self, $reason) {
  $self->_disconnect($reason);
  $self->_close;
}

# Marks the current request disconnected and notifies the app, in the spec's order
sub _disconnect ($self, $reason, $keep_socket = 0) {
  my $cstate = $self->[CSTATE] or return;
  return unless $cstate->[CS_CONNECTED];
  $cstate->_disconnect($reason);
  if (my $f = delete $self->[RECV_WAIT]) { $f->done({type => 'http.disconnect'}) }
  if (my $f = delete $self->[DRAIN])     { $f->done }
}

sub _close_after_flush ($self, $linger = 0) {
  return if $self->[PHASE] >= CLOSING;
  $self->[PHASE]  = CLOSING;
  $self->[LINGER] = $linger;
  return $self->_finish_close unless length $self->[WBUF];
  $self->[DEADLINE_KIND] = 'closing';
  $self->[DEADLINE] = $PAGI::Server::NOW + $self->[SERVER]{timeout};
}

# Output flushed: close, after a short linger when the peer may still be sending
sub _finish_close ($self) {
  if ($self->[LINGER] && !$self->[EOF]) {
    # Closing with unread input would reset the connection and could destroy the
    # response in flight; half-close and drain the input for a moment instead
    shutdown($self->[FH], SHUT_WR);
    $self->[RBUF] = '';
    $self->[DEADLINE_KIND] = 'linger';
    $self->[DEADLINE] = $PAGI::Server::NOW + LINGER_SECONDS;
    $self->[READING] = 0;
    $self->_resume_read;
    return;
  }
  $self->_close;
}

sub _close ($self) {
  return if $self->[PHASE] == CLOSED;
  my $fh = $self->[FH];
  $self->_disconnect('client_closed');
  $self->[PHASE] = CLOSED;
  $self->[CORKED] = 0;
  $self->[LOOP]->unwatch_io(handle => $fh, on_read_ready => 1, on_write_ready => 1);
  close $fh;
  $self->[WBUF] = $self->[RBUF] = '';
  if (my $f = delete $self->[DRAIN]) { $f->done }
  # The cycles through the callbacks and the transport (which the scope, kept as the
  # request record, holds too) end here; a running app's Future still holds us until
  # it finishes
  @$self[RECEIVE, SEND, ON_READ, ON_WRITE, TRANSPORT, REQ] = ();
  # The app's timers (keepalives) hold the connection too
  _timer($self, KA_TIMER) if defined $self->[KA_TIMER];
  _timer($self, PONG_TIMER) if defined $self->[PONG_TIMER];
  $self->[SERVER]->_forget($self);
}

# Intervals an app gives (sse.keepalive, websocket.keepalive: seconds, fractions
# honoured) run on the loop's own timers; the connection's own deadlines stay on the
# server's cheap once-a-second tick. _timer($self, FIELD, $seconds, $code) runs
# $code once after $seconds; the timer lives in the field FIELD, so that setting it
# again replaces it and _timer($self, FIELD) cancels it. Closing cancels them all.
sub _timer ($self, $field, $seconds = undef, $code = undef) {
  my $loop = $self->[LOOP];
  $loop->unwatch_time($self->[$field]) if defined $self->[$field];
  $self->[$field] = undef;
  return unless defined $seconds;
  $self->[$field] = $loop->watch_time(after => $seconds, code => sub {
    $self->[$field] = undef;
    $code->();
  });
}

# Called once a second by the server: enforce the deadline of the current phase
sub _tick ($self, $now) {
  if (defined $self->[WDEADLINE] && $now > $self->[WDEADLINE]) {
    return $self->_abort('write_timeout');
  }
  my $kind = $self->[DEADLINE_KIND] or return;
  return if $now <= $self->[DEADLINE];
  if ($kind eq 'idle') { return $self->_close }
  if ($kind eq 'head') {
    # A request head that is too slow: 408 and close
    return $self->_wire_error(408, 'request timeout') if length $self->[RBUF];
    return $self->_close;
  }
  if ($kind eq 'body') {
    $self->[DEADLINE_KIND] = '';
    return $self->_body_error(408, 'request timeout', 'client_timeout') unless $self->[DRAINING];
    return $self->_close;
  }
  $self->_close;    # closing or linger took too long
}

# Server shutdown: idle connections close now, busy ones after their response
sub _shutdown ($self, $force = 0) {
  $self->[KEEP] = 0;
  if ($force) {
    $self->_disconnect('server_shutdown');
    return $self->_close;
  }
  $self->_close if $self->[PHASE] == IDLE && !length $self->[RBUF];
}

sub _access_log ($self) {
  my $server = $self->[SERVER];
  my $req = $self->[REQ] or return;
  my $client = $self->[CLIENT] ? $self->[CLIENT][0] : '-';
  my $target = $req->{raw_path} . (length $req->{query_string} ? "?$req->{query_string}" : '');
  my $took = $self->[REQ_TIME] ? sprintf('%.6f', $server->_hires_time - $self->[REQ_TIME]) : '-';
  $server->access_log_line(sprintf qq{%s - - [%s] "%s %s HTTP/%s" %d %s %s\n},
    $client, $server->_log_time, $req->{method}, $target, $req->{http_version},
    $self->[STATUS], $self->[SENT_BYTES] || '-', $took);
}

# The protocols that take a connection over after its request head
require PAGI::Server::Connection::WebSocket;
require PAGI::Server::Connection::SSE;

1;

=head1 NAME

PAGI::Server::Connection - one HTTP/1.1 connection of PAGI::Server

=head1 DESCRIPTION

Internal. Reads requests through L<PAGI::Server::Protocol::HTTP1>, calls the PAGI
application once per request with a new scope, and writes its response events. The
C<$receive> and C<$send> callbacks are made once per connection; the state of the
current request lives in the object's fields and is reset for the next one.
Responses to pipelined requests are written strictly in order: the next request is
parsed only when the previous response is complete and its application has returned.

A response whose C<http.response.start> is followed by one final
C<http.response.body> is serialized into one buffer and written with one write (the
fast path); at log level C<debug> each response says which path it took.

The object is an array (its field indexes are the constants of
L<PAGI::Server::Connection::Fields>). Its callbacks, C<$receive> and C<$send>
included, hold the connection itself rather than a weak reference; closing breaks
those cycles, so a connection is freed when it is closed and its application has
finished (or when the application drops callbacks it kept longer: until then they
find a closed connection, and C<$send> does nothing). C<$PAGI::Server::Connection::LIVE>
counts the connection objects alive, for leak checks (C<t/29-lifetime.t>).

=cut
