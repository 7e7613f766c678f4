package PAGI::Server::Connection;
use strict;
use warnings;
use experimental 'signatures';
use Errno qw(EAGAIN EWOULDBLOCK EINTR);
use Scalar::Util qw(blessed);
use Time::HiRes ();
use Socket qw(SHUT_WR);
use Future;
use PAGI::Server::Protocol::HTTP1;
use PAGI::Server::Protocol::Errors;
use PAGI::Server::ConnectionState qw(:fields);
use PAGI::Server::Connection::Fields qw(:fields);
use PAGI::Server::Connection::Request qw(:fields :facts);
use PAGI::Server::Transport;
use PAGI::Server::Config qw(PARSE_LIMITS HEADER_TIMEOUT KEEPALIVE_TIMEOUT_S REQUEST_TIMEOUT_S MAX_BODY_SIZE
  MAX_HEADER_SIZE SCHEME ROOT_PATH PLAIN_HTTP MAX_REQUESTS WRITE_HIGH_WATERMARK WRITE_LOW_WATERMARK HTTP2
  FULLFLUSH PROXY_HEADERS);
use PAGI::Server::Shared qw(:fields);

our $VERSION = '0.001';

# One object per accepted connection: IO::Async glue and PAGI events. The bytes go
# through PAGI::Server::Protocol::HTTP1, which is the only place that knows whether
# the codec is Rust or Perl. Three records make up a connection's state: its own
# fields (PAGI::Server::Connection::Fields), the current request's
# (PAGI::Server::Connection::Request, in RQ), and after an upgrade the WebSocket
# session's or SSE stream's (in PROTO, owned by their classes). The response path
# (http.response.*) is PAGI::Server::Connection::Response, whose subs are this
# class's methods.
#
# On the request path, subs that no subclass overrides are called as functions
# (_start_request($self, ...): no method lookup). The ones the WebSocket and SSE
# classes override (_process_input, _receive, _send, _app_done, _disconnect, _on_eof,
# _half_close_ok, _tick, _shutdown, _soft_stop) are always called as methods.

BEGIN {
  # The codec's functions, and its named numbers (defined in the facade)
  no strict 'refs';
  *$_ = \&{"PAGI::Server::Protocol::HTTP1::$_"}
    for qw(parse_request decode_chunked serialize_response F_HEAD F_CLOSE F_HTTP10 CHUNK_SIZE CHUNK_DONE);
}
# The response path: its subs become this class's methods
use PAGI::Server::Connection::Response qw(_send _write_head _write_body _write_trailers
  _end_body _end_chunks _send_future _send_file _response_complete);

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
use constant DRAIN_BODY_MAX => 1 << 16;     # unread request body we read and drop to keep a connection
use constant LINGER_SECONDS => 2;

# The facts of a request with none beyond the scope keys (read-only: shared)
use constant H2_STREAM => 'PAGI::Server::Connection::HTTP2::Stream';
my $NO_FACTS = [];
Internals::SvREADONLY(@$NO_FACTS, 1);

my $CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n";

# Connection objects alive (made and not yet freed): for leak checks
our $LIVE = 0;
sub DESTROY { $LIVE-- }

# What a send that needs no waiting returns (see PAGI::Server::Connection::Response)
our $DONE = $PAGI::Server::Connection::Response::DONE;

# The protocols that can take a connection over once its request head is read: the
# class's take_over makes the connection its own
my %TAKE_OVER = (
  websocket => 'PAGI::Server::Connection::WebSocket',
  sse       => 'PAGI::Server::Connection::SSE',
);

# $tls: a TLS handle's scope extension; $info: the addresses a PROXY protocol header
# gave (PAGI::Server::Proxy::addresses), instead of the socket's
sub new ($class, $server, $cfg, $live, $fh, $tls = undef, $info = undef) {
  my $self = bless [], $class;
  @$self[SERVER, CFG, LIVE, LOOP, FH, FD, RBUF, WBUF, PHASE, EOF, READING, KEEP]
    = ($server, $cfg, $live, $live->[IO_LOOP], $fh, fileno($fh), '', '', IDLE, 0, 1, 0);
  # The output buffer's marks: above write_high a $send waits for the socket (and
  # pagi.transport says so), below write_low it is released
  @$self[WRITE_HIGH, WRITE_LOW] = @$cfg[WRITE_HIGH_WATERMARK, WRITE_LOW_WATERMARK];

  # Connection info is read once and shared by every scope on this connection
  $info //= PAGI::Server::Protocol::HTTP1::connection_info($self->[FD]) || [];
  $self->[CLIENT]      = defined $info->[0] ? [$info->[0], $info->[1]] : undef;
  $self->[SERVER_ADDR] = [$info->[2], $info->[3]];
  # (https by TLS, or by a PROXY protocol header saying the client came over TLS)
  $self->[URL_SCHEME]  = $info->[4] ? 'https' : $cfg->[SCHEME];

  # The per-connection callbacks, made once; request state lives in the request
  # record. They hold the connection itself, not a weak reference (a weakly
  # referenced array is magical, which makes every field access slower): _close
  # breaks these cycles, and a callback that an app keeps longer finds a closed
  # connection.
  $self->[RECEIVE]  = sub { $self->_receive };
  # HTTP's $send calls its method as a function (no method lookup; the closure stays
  # small: a closure's own lexicals are copied per connection, buffers and all); the
  # WebSocket and SSE classes install a method-dispatching one (_dispatch_send)
  $self->[SEND]     = sub { _send($self, $_[0]) };
  # (a function call: _on_read is never overridden; TLS replaces this callback)
  # (a closed connection's callback may still be called for an event of the batch
  # its socket was closed in)
  $self->[ON_READ]  = sub { _on_read($self) if $self->[PHASE] != CLOSED };
  # (ON_WRITE, the write-ready callback, is made when a write first has to wait:
  # most connections never need it)
  $LIVE++;
  # A TLS handle (IO::Socket::SSL): its session record and TLS-aware callbacks (HTTP/2
  # there comes by ALPN); a plain connection of a server with http2 may start with the
  # HTTP/2 preface (h2c with prior knowledge)
  if ($tls) { PAGI::Server::TLS::setup_connection($self, $tls) }
  elsif ($cfg->[HTTP2]) { $self->[H2C] = 1 }
  # Its scopes are not plain TCP's (the one check on the request path; _scope_extra)
  $self->[SCOPE_EXTRA] = $tls || !$self->[CLIENT] || $cfg->[FULLFLUSH] ? 1 : 0;

  $self->[DEADLINE]      = $live->[NOW] + $cfg->[KEEPALIVE_TIMEOUT_S];
  $self->[DEADLINE_KIND] = 'idle';
  # (a plain socket goes straight into the loop's epoll set when it has one; TLS's
  # handle keeps IO::Async's watches, which PAGI::Server::TLS manages)
  $self->[EPOLL] = $live->[EPOLL_SET] unless $tls;
  _io($self, 1);
  return $self;
}

# What the socket is watched for: readable (1), writable (2), both (3) or nothing
# (0). Through the loop's epoll set directly (PAGI::Server::Loop::epoll_of), or its
# watch_io and unwatch_io.
sub _io ($self, $mask) {
  my $old = $self->[IOMASK] // 0;
  return if $mask == $old;
  $self->[IOMASK] = $mask;
  my $fh = $self->[FH];
  if (my $epoll = $self->[EPOLL]) {
    return $epoll->delete($fh) if !$mask;
    my ($events, $cb) = $mask == 1 ? ('in', $self->[ON_READ]) : $mask == 2 ? ('out', $self->[ON_WRITE])
      : (['in', 'out'], $self->[ON_IO] //= sub {
        my $ev = $_[0];
        $self->[ON_READ]->() if ($ev->{in} || $ev->{hup} || $ev->{err}) && $self->[ON_READ];
        $self->[ON_WRITE]->() if ($ev->{out} || $ev->{err}) && $self->[ON_WRITE];
      });
    return if $old ? $epoll->modify($fh, $events, $cb) : $epoll->add($fh, $events, $cb);
    # (refused: a handle something else watches already; the loop's watches then)
    @$self[EPOLL, IOMASK] = (undef, 0);
    return _io($self, $mask);
  }
  my $loop = $self->[LOOP];
  my ($on, $off) = ($mask & ~$old, $old & ~$mask);
  $loop->unwatch_io(handle => $fh, ($off & 1 ? (on_read_ready => 1) : ()), ($off & 2 ? (on_write_ready => 1) : ()))
    if $off;
  $loop->watch_io(handle => $fh, ($on & 1 ? (on_read_ready => $self->[ON_READ]) : ()),
    ($on & 2 ? (on_write_ready => $self->[ON_WRITE]) : ())) if $on;
}

# Bytes written by the app and not yet taken by the socket (pagi.transport asks)
sub write_buffered ($self) { length $self->[WBUF] }

# Input the loop will not announce (bytes OpenSSL already decrypted): read it now
sub _read_pending ($self) { $self->[ON_READ]->() }

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
  $self->[DEADLINE] = $self->[LIVE][NOW] + $self->[CFG][REQUEST_TIMEOUT_S]
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
  $self->_released if length $self->[WBUF] < $self->[WRITE_LOW] && ($self->[DRAIN] || $self->[ABOVE]);
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
  my $rq = $self->[RQ];
  if (!$rq->[BODY_OPEN] && $self->_half_close_ok) {
    $self->[KEEP] = 0;
    $rq->[HALF_CLOSED] = 1;
    return $self->_disconnect('client_closed');
  }
  $self->_abort('client_closed');
}

# Streams (SSE) need the end of input as their disconnect signal; plain HTTP does not
sub _half_close_ok ($self) { 1 }

sub _pause_read ($self) {
  return unless $self->[READING];
  $self->[READING] = 0;
  _io($self, $self->[WWATCH] ? 2 : 0);
}

sub _resume_read ($self) {
  return if $self->[READING] || $self->[EOF] || $self->[PHASE] == CLOSED;
  $self->[READING] = 1;
  _io($self, $self->[WWATCH] ? 3 : 1);
}

# Parses what is buffered: a new request head, or more of the current body.
# Not re-entered: a request that completes synchronously inside it (the app answered
# at once) only flips the phase back to IDLE, and this loop takes the next pipelined
# head, so the stack stays flat however many requests are queued.
sub _process ($self) {
  return if $self->[IN_PROCESS];
  $self->[IN_PROCESS] = 1;
  $self->_process_input;
  $self->[IN_PROCESS] = 0;
}

sub _process_input ($self) {
  my $cfg = $self->[CFG];
  while (1) {
    if ($self->[PHASE] == IDLE) {
      return $self->[EOF] ? $self->_close : undef unless length $self->[RBUF];
      if ($self->[H2C]) {
        # The first bytes of the connection: the HTTP/2 preface (or its start: wait)?
        my $h2 = PAGI::Server::Protocol::HTTP2::is_preface($self->[RBUF]);
        return $self->[EOF] ? $self->_close : undef unless defined $h2;
        return 'PAGI::Server::Connection::HTTP2'->take_over($self) if $h2;
        $self->[H2C] = 2;    # (not the preface: a request may still ask for Upgrade: h2c)
      }
      my ($req, $consumed) = parse_request($self->[RBUF], @{$cfg->[PARSE_LIMITS]});
      if (!defined $req) {
        # The head timeout runs from its first byte, so trickling bytes cannot extend it
        if ($self->[DEADLINE_KIND] ne 'head') {
          $self->[DEADLINE_KIND] = 'head';
          $self->[DEADLINE]      = $self->[LIVE][NOW] + $cfg->[HEADER_TIMEOUT];
        }
        return $self->_close if $self->[EOF];    # this head will never complete
        return;
      }
      return $self->_wire_error($req->{error}) if exists $req->{error};
      substr($self->[RBUF], 0, $consumed, '');
      _start_request($self, $req);
      next;
    }
    return if $self->[PHASE] != REQUEST;
    if ($self->[RQ][BODY_MODE] && length $self->[RBUF]) {
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
  my ($cfg, $live) = @$self[CFG, LIVE];
  # The parser's result becomes the scope: its six always-present keys are named as
  # the scope names them, and the other facts (a body, close, an upgrade: only
  # present when set) are taken out first (doc/codec.md). A plain request (a
  # keep-alive GET) has none, and skips every check below that needs them.
  my $plain = keys %$req == 6;
  my $facts = $NO_FACTS;
  if (!$plain) {
    # (an array in PAGI::Server::Connection::Request's FACT_* order)
    $facts = [delete @$req{@PAGI::Server::Connection::Request::FACT_KEYS}];
  }
  # Upgrade: h2c on a plain connection of a server with http2 (RFC 7540 3.2)
  return if !$plain && $self->[H2C] && ($facts->[FACT_UPGRADE] // '') eq 'h2c' && $req->{http_version} eq '1.1'
    && 'PAGI::Server::Connection::HTTP2'->upgrade($self, $req, $facts);
  my $scope = $req;
  @$scope{qw(type pagi scheme root_path client server state extensions pagi.transport)} = (
    'http', {version => '0.3', spec_version => '0.3'}, $self->[URL_SCHEME], $cfg->[ROOT_PATH], $self->[CLIENT],
    $self->[SERVER_ADDR], {%{$live->[APP_STATE]}}, {},
    $self->[TRANSPORT] //= PAGI::Server::Transport::of($self, @$self[WRITE_HIGH, WRITE_LOW]));
  $self->[SCOPE_EXTRA] and _scope_extra($self, $scope);
  # The request's record; cstate is its pagi.connection object (ConnectionState->new,
  # without the call); rflags the response framing known now (an app may edit its scope)
  my $rq = $self->[RQ] = PAGI::Server::Connection::Request::start($req, $facts,
    bless([1, 0, 0], 'PAGI::Server::ConnectionState'),
    ($req->{method} eq 'HEAD' ? F_HEAD : 0) | ($req->{http_version} eq '1.0' ? F_HTTP10 : 0));
  $rq->[REQ_TIME] = Time::HiRes::time() if $live->[ACCESS_LOGGER];
  @$self[PHASE, DEADLINE_KIND] = (REQUEST, '');
  if (!$plain && defined $facts->[FACT_UPGRADE] && $facts->[FACT_UPGRADE] eq 'websocket'
    && $req->{method} eq 'GET' && $req->{http_version} eq '1.1' && !$cfg->[PLAIN_HTTP]) {
    return $TAKE_OVER{websocket}->take_over($self, $scope);
  }
  $self->[KEEP] = ($plain || !$facts->[FACT_CLOSE]) && !$live->[STOPPING];

  if (!$plain) {
    # Request body framing, decided by the parser in its single pass
    my $mode = 0;
    if ($facts->[FACT_CHUNKED]) {
      $mode = 2;
      $rq->[CHUNK_STATE] = CHUNK_SIZE;
    }
    elsif (my $cl = $facts->[FACT_CONTENT_LENGTH]) {
      return $self->_wire_error('body_too_large') if $cfg->[MAX_BODY_SIZE] && $cl > $cfg->[MAX_BODY_SIZE];
      $mode = 1;
      $rq->[BODY_LEFT] = $cl;
    }
    if ($mode) {
      @$rq[BODY_MODE, BODY_OPEN] = ($mode, 1);
      @$self[DEADLINE_KIND, DEADLINE] = ('body', $live->[NOW] + $cfg->[REQUEST_TIMEOUT_S]);
      $self->_feed_body if length $self->[RBUF];
      return if $self->[PHASE] != REQUEST;    # the body was already rejected
    }
    # Accept: text/event-stream makes any method an SSE stream
    return $TAKE_OVER{sse}->take_over($self, $scope) if $facts->[FACT_SSE] && !$cfg->[PLAIN_HTTP];
  }
  $scope->{'pagi.connection'} = $rq->[CSTATE];
  _call_app($self, $scope);
}

# The scope of a connection that is not plain TCP's: a TLS connection's has the tls
# extension; a Unix socket's has no client key at all (it has no peer address); the
# extensions the server was asked for are advertised (fullflush)
sub _scope_extra ($self, $scope) {
  $scope->{extensions}{tls} = PAGI::Server::TLS::extension_of($self) if $self->[TLS];
  $scope->{extensions}{fullflush} = {} if $self->[CFG][FULLFLUSH];
  delete $scope->{client} unless $self->[CLIENT];
}

# http.fullflush: what the connection holds for the client goes to the socket now
# (inside a read, responses otherwise wait for its end, to go out in one write)
sub _flush ($self) {
  return if !length $self->[WBUF] || $self->[WWATCH] || $self->[PHASE] == CLOSED;
  my ($corked, $bytes) = ($self->[CORKED], $self->[WBUF]);
  @$self[CORKED, WBUF] = (0, '');
  $self->_write($bytes);
  $self->[CORKED] = $corked;
}

# For the WebSocket and SSE classes: a $send that calls their _send method
sub _dispatch_send ($self) {
  $self->[SEND] = sub { $self->_send($_[0]) };
}

sub _call_app ($self, $scope) {
  my $f = eval { $self->[LIVE][RUN_APP]->($scope, $self->[RECEIVE], $self->[SEND]) };
  # The usual cases first: an async sub's Future, or a send's (a synchronous app)
  if (ref $f eq 'Future' || ref $f eq 'PAGI::Server::Future::Done') { }
  elsif (!$f) { $f = Future->fail($@ || "application did not return a Future\n") }
  elsif (!(blessed $f && $f->can('on_ready'))) {
    $f = Future->fail("application returned a non-Future value\n");
  }
  my $rq = $self->[RQ];
  # Plain HTTP's usual case (and an HTTP/2 stream's): the app is done and its response
  # complete (what _app_done would find first), so straight to the next request
  if ($rq->[COMPLETE] && (ref $self eq __PACKAGE__ || ref $self eq H2_STREAM) && $f->is_done
    && $rq->[CSTATE][CS_CONNECTED]) {
    $rq->[APP_RUNNING] = 0;
    return ref $self eq __PACKAGE__ ? _next_request($self) : $self->_next_request;
  }
  if ($f->is_ready) { return $self->_app_done($f) }
  # (the callback holds the connection until the app finishes, closed or not)
  $rq->[APP_FUTURE] = $f;
  $f->on_ready(sub { $self->_app_done($_[0]) });
}

# Moves request body bytes from the read buffer to the app's queue
sub _feed_body ($self) {
  my $cfg = $self->[CFG];
  my $rq = $self->[RQ];
  my $got;
  if ($rq->[BODY_MODE] == 1) {
    my $take = length $self->[RBUF];
    $take = $rq->[BODY_LEFT] if $take > $rq->[BODY_LEFT];
    return unless $take;
    $got = substr($self->[RBUF], 0, $take, '');
    $rq->[BODY_LEFT] -= $take;
    $rq->[BODY_OPEN] = 0 if !$rq->[BODY_LEFT];
  }
  else {
    my ($data, $consumed, $state)
      = decode_chunked($self->[RBUF], $rq->[CHUNK_STATE], $cfg->[MAX_HEADER_SIZE]);
    return $self->_body_error($data->{error}, 'protocol_error') if ref $data;
    substr($self->[RBUF], 0, $consumed, '');
    $rq->[CHUNK_STATE] = $state;
    $rq->[BODY_OPEN]   = 0 if $state == CHUNK_DONE;
    $got = $data;
  }
  $rq->[BODY_SEEN] += length $got;
  if ($cfg->[MAX_BODY_SIZE] && $rq->[BODY_SEEN] > $cfg->[MAX_BODY_SIZE]) {
    return $self->_body_error('body_too_large', 'body_too_large');
  }
  if (!$rq->[BODY_OPEN]) {
    $rq->[BODY_MODE]       = 0;
    $self->[DEADLINE_KIND] = '';
  }
  if ($rq->[DRAINING]) {
    return $self->_next_request if !$rq->[BODY_OPEN];
    return $self->_resume_read;
  }
  # No new bytes (a partial chunk-size line): no empty event for the app
  return unless length $got || !$rq->[BODY_OPEN];
  $rq->[BODY_BUF] .= $got;
  $self->_pause_read if length $rq->[BODY_BUF] > BODY_HIGH;
  $self->_deliver_body if $rq->[RECV_WAIT];
}

# The request body is invalid or too large (an error kind): answer if we still can,
# then close; the app is told $reason
sub _body_error ($self, $kind, $reason) {
  $self->[KEEP] = 0;
  my $rq = $self->[RQ];
  if (!$rq->[STARTED] && !$rq->[COMPLETE]) {
    # Answer first: the disconnect resumes the app at once, and an app that returns
    # then must find the connection already closing, or it would just close it
    $self->_wire_error($kind);
    return $self->_disconnect($reason);
  }
  $self->_abort($reason);
}

sub _receive ($self) {
  my $rq = $self->[RQ];
  # After the response is complete the next event is the disconnect, read or not
  return PAGI::Server::Future::ready({type => 'http.disconnect'})
    if !$rq || !$rq->[CSTATE][CS_CONNECTED] || $rq->[COMPLETE];
  if ($rq->[BODY_FINAL]) {
    # The body was delivered; the next event is the disconnect
    return $rq->[RECV_WAIT] //= Future->new;
  }
  if ($rq->[FACTS][FACT_EXPECT_CONTINUE] && !$rq->[CONTINUED] && !$rq->[STARTED]) {
    $rq->[CONTINUED] = 1;
    $self->_continue;
  }
  if (!$rq->[BODY_OPEN] || length $rq->[BODY_BUF]) {
    $self->_resume_read if !$self->[READING] && $self->[PHASE] == REQUEST;
    return PAGI::Server::Future::ready($self->_body_event);
  }
  return $rq->[RECV_WAIT] //= Future->new;
}

# The body read so far, as the app's next http.request event
sub _body_event ($self) {
  my $rq = $self->[RQ];
  # (taken with delete: a request without a body never makes the field)
  my $body = delete $rq->[BODY_BUF];
  $rq->[BODY_FINAL] = !$rq->[BODY_OPEN];
  return {type => 'http.request', body => $body // '', more => $rq->[BODY_OPEN] ? 1 : 0};
}

# Expect: 100-continue: the client may send its body now
sub _continue ($self) { $self->_write($CONTINUE) }

sub _deliver_body ($self) {
  my $rq = $self->[RQ];
  my $f = delete $rq->[RECV_WAIT];
  return if $rq->[BODY_FINAL];
  $f->done($self->_body_event);
}

sub _app_done ($self, $f) {
  my $rq = $self->[RQ];
  $rq->[APP_RUNNING] = 0;
  $rq->[APP_FUTURE]  = undef;
  my $cstate = $rq->[CSTATE];
  # The usual case first: the app is done and its response complete
  return $self->_next_request if $rq->[COMPLETE] && $f->is_done && $cstate->[CS_CONNECTED];
  my $server = $self->[SERVER];
  my $error = $f->is_failed ? ($f->failure)[0] : undef;
  $error = 'cancelled' if !defined $error && $f->is_cancelled;
  if (!$cstate->[CS_CONNECTED]) {
    # The client has gone: no 500, no error log
    return $self->_close_after_flush if $self->[PHASE] == REQUEST;
    return;
  }
  if (defined $error) {
    chomp(my $e = "$error");
    $server->log(error => "application error: $e");
  }
  if (!$rq->[HEAD_SENT]) {
    # Nothing of the response is on the wire yet (not even after http.response.start,
    # whose head waits for the first body): the client still gets a proper 500
    $server->log(error => $rq->[STARTED] ? 'application finished without completing its response'
      : 'PAGI application returned without starting a response') unless defined $error;
    $cstate->[CS_STARTED] = 1;
    $self->_disconnect('server_error', 1);
    return $self->_wire_error('app_error');
  }
  if (!$rq->[COMPLETE]) {
    $server->log(error => 'application finished without completing its response; closing')
      unless defined $error;
    return $self->_cut_short;
  }
  $self->_next_request;
}

# Can the unread rest of the request body be read and dropped to keep the connection?
sub _can_drain ($self) {
  my $rq = $self->[RQ];
  return $rq->[BODY_MODE] == 1 && $rq->[BODY_LEFT] <= DRAIN_BODY_MAX
    && !($rq->[FACTS][FACT_EXPECT_CONTINUE] && !$rq->[CONTINUED]);
}

# Both the response and the app are done: keep-alive or close
sub _next_request ($self) {
  return if $self->[PHASE] != REQUEST;
  my $rq = $self->[RQ];
  if ($rq->[BODY_OPEN] && !$rq->[DRAINING]) {
    # The app did not read the whole body. A small rest of a Content-Length body is
    # read and dropped to keep the connection; otherwise close. A client still waiting
    # for "100 Continue" will not send its body at all.
    if ($self->[KEEP] && $self->_can_drain) {
      $rq->[DRAINING]        = 1;
      $self->[DEADLINE_KIND] = 'body';
      $self->[DEADLINE]      = $self->[LIVE][NOW] + $self->[CFG][REQUEST_TIMEOUT_S];
      return $self->_feed_body;    # comes back here once the body is done
    }
    $self->[KEEP] = 0;
  }
  my $live = $self->[LIVE];
  # max_requests (0 = off): the worker retires after its Nth request (a soft stop,
  # which keeps this connection for one more request: its response has started)
  $self->[SERVER]->retire if ++$live->[SERVED] == $self->[CFG][MAX_REQUESTS];
  # The request is done: its record goes (a late call of a callback the app kept
  # finds no request)
  $self->[RQ] = undef;
  # A soft stop (a retiring worker) keeps a keep-alive connection for one more request,
  # answered with Connection: close, rather than cut it under a client's next request
  if (!$self->[KEEP] || $live->[STOPPING] && !$live->[SOFT_STOP]) { return $self->_close_after_flush }
  @$self[PHASE, DEADLINE_KIND, DEADLINE]
    = (IDLE, 'idle', $live->[NOW] + $self->[CFG][KEEPALIVE_TIMEOUT_S]);
  $self->_resume_read unless $self->[READING];
  # The next pipelined request (when called from inside _process, its loop does it)
  $self->_process if length $self->[RBUF] && !$self->[IN_PROCESS];
}

# ---- writing -------------------------------------------------------------------

sub _write ($self, $data) {
  return if $self->[PHASE] == CLOSED;
  if (length $self->[WBUF] || $self->[CORKED]) {
    $self->[WBUF] .= $data;
    $self->_high if length $self->[WBUF] >= $self->[WRITE_HIGH] && !$self->[ABOVE];
    return;
  }
  my $n = syswrite($self->[FH], $data);
  if (!defined $n) {
    return $self->_abort('write_error') unless $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
    $n = 0;
  }
  return if $n == length $data;
  $self->[WBUF] = substr($data, $n);
  $self->_high if length $self->[WBUF] >= $self->[WRITE_HIGH] && !$self->[ABOVE];
  $self->[WDEADLINE] = $self->[LIVE][NOW] + $self->[CFG][REQUEST_TIMEOUT_S];
  $self->[WWATCH] = 1;
  $self->[ON_WRITE] //= sub { $self->_on_write if $self->[PHASE] != CLOSED };
  _io($self, $self->[READING] ? 3 : 2);
  PAGI::Server::TLS::again($self, 'write') if $self->[TLS];
}

# The output buffer reached the high mark: pagi.transport's on_high_water
sub _high ($self) {
  $self->[ABOVE] = 1;
  $self->[TRANSPORT]->_high if $self->[TRANSPORT];
}

# The output buffer fell below the low mark: release a waiting send, pagi.transport's
# on_drain
sub _released ($self) {
  if ($self->[ABOVE]) {
    $self->[ABOVE] = 0;
    $self->[TRANSPORT]->_drain if $self->[TRANSPORT];
  }
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
  $self->[WDEADLINE] = $self->[LIVE][NOW] + $self->[CFG][REQUEST_TIMEOUT_S];
  if (length $self->[WBUF] < $self->[WRITE_LOW]) {
    $self->_released;
    # That resumed the app, which may have finished and closed us meanwhile
    return if $self->[PHASE] == CLOSED;
  }
  return if length $self->[WBUF];
  $self->[WDEADLINE] = undef;
  $self->[WWATCH] = 0;
  _io($self, $self->[READING] ? 1 : 0);
  $self->_finish_close if $self->[PHASE] == CLOSING;
}

# ---- errors, disconnects, closing ------------------------------------------------

# The client as log lines name it
sub _peer ($self) { $self->[CLIENT] ? "$self->[CLIENT][0]:$self->[CLIENT][1]" : 'unix socket' }

# The one wire-error builder: a close-delimited text/plain response for an error kind
# of the one table (errors.tsv: the HTTP codec's rows, or the server's own), its
# status and message (with $detail in place of a %s), and $headers of the caller's
sub _wire_error ($self, $kind, $headers = [], $detail = undef) {
  my ($status, $message) = @{$PAGI::Server::Protocol::Errors::HTTP{$kind} // $PAGI::Server::Protocol::Errors::SERVER{$kind}};
  $message =~ s/%s/$detail \/\/ ''/e if defined $detail;
  $self->[SERVER]->log(warn => $self->_peer . ": $status $message");
  my $reason = PAGI::Server::Protocol::HTTP1::error_reason($status);
  my ($bytes) = serialize_response($status,
    [['Content-Type', 'text/plain; charset=utf-8'], @$headers], F_CLOSE, "$reason\n");
  $self->_write($bytes);
  if (my $rq = $self->[RQ]) {
    @$rq[STATUS, SENT_BYTES] = ($status, length($reason) + 1);
    $self->_access_log if $self->[LIVE][ACCESS_LOGGER];
  }
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
  my $rq = $self->[RQ] or return;
  my $cstate = $rq->[CSTATE];
  return unless $cstate->[CS_CONNECTED];
  $cstate->_disconnect($reason);
  if (my $f = delete $rq->[RECV_WAIT]) { $f->done({type => 'http.disconnect'}) }
  if (my $f = delete $self->[DRAIN])   { $f->done }
}

sub _close_after_flush ($self, $linger = 0) {
  return if $self->[PHASE] >= CLOSING;
  $self->[PHASE]  = CLOSING;
  $self->[LINGER] = $linger;
  return $self->_finish_close unless length $self->[WBUF];
  $self->[DEADLINE_KIND] = 'closing';
  $self->[DEADLINE] = $self->[LIVE][NOW] + $self->[CFG][REQUEST_TIMEOUT_S];
}

# Output flushed: close, after a short linger when the peer may still be sending
sub _finish_close ($self) {
  if ($self->[LINGER] && !$self->[EOF]) {
    # Closing with unread input would reset the connection and could destroy the
    # response in flight; half-close and drain the input for a moment instead
    shutdown($self->[FH], SHUT_WR);
    $self->[RBUF] = '';
    $self->[DEADLINE_KIND] = 'linger';
    $self->[DEADLINE] = $self->[LIVE][NOW] + LINGER_SECONDS;
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
  _io($self, 0);
  close $fh;
  $self->[WBUF] = $self->[RBUF] = '';
  if (my $f = delete $self->[DRAIN]) { $f->done }
  # The cycles through the callbacks, the transport and the scope (which holds the
  # transport) end here; a running app's Future still holds us until it finishes
  @$self[RECEIVE, SEND, ON_READ, ON_WRITE, ON_IO, TRANSPORT] = ();
  $self->[RQ][REQ] = undef if $self->[RQ];
  # The app's timers (keepalives) hold the connection too
  if (my $timers = $self->[TIMERS]) { $self->[LOOP]->unwatch_time($_) for values %$timers }
  $self->[TIMERS] = undef;
  $self->[SERVER]->connection_closed($self);
}

# Development: text that looks like UTF-8 bytes given as characters (JSON encoded to
# bytes, say) is encoded a second time on the wire; one warning per connection
sub _check_text ($self, $what, $text) {
  return if $self->[TEXT_WARNED] || !looks_encoded($text);
  $self->[TEXT_WARNED] = 1;
  $self->[SERVER]->log(warn => "$what looks like UTF-8 bytes, not characters: it will be "
    . "encoded twice; decode it first, or send it as bytes (warned once per connection, in development)");
}

# Intervals an app gives (sse.keepalive, websocket.keepalive: seconds, fractions
# honoured) run on the loop's own timers; the connection's own deadlines stay on the
# server's cheap once-a-second tick. _timer($self, NAME, $seconds, $code) runs $code
# once after $seconds; setting a timer of the same name again replaces it, and
# _timer($self, NAME) cancels it. Closing cancels them all.
sub _timer ($self, $name, $seconds = undef, $code = undef) {
  my $timers = $self->[TIMERS] //= {};
  my $loop = $self->[LOOP];
  if (defined(my $id = delete $timers->{$name})) { $loop->unwatch_time($id) }
  return unless defined $seconds && $self->[PHASE] != CLOSED;
  $timers->{$name} = $loop->watch_time(after => $seconds, code => sub {
    delete $timers->{$name};
    $code->();
  });
}

# Is the timer NAME set?
sub _has_timer ($self, $name) { $self->[TIMERS] && exists $self->[TIMERS]{$name} }

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
    return $self->_wire_error('request_timeout') if length $self->[RBUF];
    return $self->_close;
  }
  if ($kind eq 'body') {
    $self->[DEADLINE_KIND] = '';
    return $self->_body_error('request_timeout', 'client_timeout') unless $self->[RQ][DRAINING];
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

# A soft stop (a retiring worker while others serve on): the connection is closed
# after its next response, not now (so that a request a client has just sent on it
# is answered, not reset)
sub _soft_stop ($self) {
  $self->[KEEP] = 0 unless $self->[RQ] && $self->[RQ][STARTED];
}

sub _access_log ($self) {
  my $rq = $self->[RQ] or return;
  my $req = $rq->[REQ] or return;
  # (proxy_headers: the client a trusted proxy named, as the scope has it)
  my $client = $self->[CFG][PROXY_HEADERS] ? $req->{client} : $self->[CLIENT];
  $self->[LIVE][ACCESS_LOGGER]->request($req, $client && $client->[0], $rq->[STATUS],
    $rq->[SENT_BYTES], $rq->[REQ_TIME]);
}

# Text that looks like UTF-8 bytes given as characters: no character above 0xFF,
# some above 0x7F, and the whole reads as valid UTF-8 (development warns about it)
sub looks_encoded ($text) {
  return 0 if $text !~ /[\x80-\xff]/ || $text =~ /[^\x00-\xff]/;
  my $copy = $text;
  utf8::downgrade($copy, 1) or return 0;
  return utf8::decode($copy) ? 1 : 0;
}

# The protocols that take a connection over after its request head (HTTP/2, before its
# first request or by its upgrade, is loaded by a server with http2)
require PAGI::Server::Connection::WebSocket;
require PAGI::Server::Connection::SSE;

1;

=head1 NAME

PAGI::Server::Connection - one HTTP/1.1 connection of PAGI::Server

=head1 DESCRIPTION

Internal. Reads requests through L<PAGI::Server::Protocol::HTTP1>, calls the PAGI
application once per request with a new scope, and writes its response events
(L<PAGI::Server::Connection::Response>). The C<$receive> and C<$send> callbacks are
made once per connection; the state of the current request lives in a record of
its own (L<PAGI::Server::Connection::Request>), made for each request and dropped
when it is done. Responses to pipelined requests are written strictly in order: the
next request is parsed only when the previous response is complete and its
application has returned. A request asking for a WebSocket upgrade or an event
stream is handed to L<PAGI::Server::Connection::WebSocket> or
L<PAGI::Server::Connection::SSE> (their C<take_over>), subclasses that reuse this
class's IO, timers and body handling.

The object is an array (its field indexes are the constants of
L<PAGI::Server::Connection::Fields>). Its callbacks, C<$receive> and C<$send>
included, hold the connection itself rather than a weak reference; closing breaks
those cycles, so a connection is freed when it is closed and its application has
finished (or when the application drops callbacks it kept longer: until then they
find a closed connection, and C<$send> does nothing). C<$PAGI::Server::Connection::LIVE>
counts the connection objects alive, for leak checks (C<t/29-lifetime.t>).

=cut
