package PAGI::Server::Connection::SSE;
use strict;
use warnings;
use experimental 'signatures';
use Future;
use PAGI::Server::Connection ();
use PAGI::Server::Connection::Fields qw(:fields);
use PAGI::Server::Connection::Request qw(:fields);
use PAGI::Server::ConnectionState qw(:fields);
use PAGI::Server::Protocol::SSE;
use PAGI::Server::Config qw(WARN_ENCODED SSE_IDLE_TIMEOUT);
use PAGI::Server::EventValidator qw(keepalive_error comment_error sse_start_error send_error);
use PAGI::Server::Shared qw(NOW);
our @ISA = ('PAGI::Server::Connection');

our $VERSION = '0.001';

# A connection serving a Server-Sent Events stream: the request (any method) was
# read as HTTP; the app's sse.* events become a chunked text/event-stream response,
# or, declined, an ordinary HTTP response. The connection closes when it ends.

# The stream's record, in the connection's field PROTO. mode: '' until the app
# answers, then stream (sse.start), decline (sse.http.response.*) or failed (a bad
# start); closed: sse.close was sent; ka_interval, ka_comment: sse.keepalive.
use PAGI::Server::Record qw(mode closed ka_interval ka_comment);

# Takes over a connection whose request (its record made, its body framing set up)
# accepts text/event-stream, and calls the app with an sse scope
sub take_over ($class, $conn, $scope) {
  my $self = bless $conn, $class;
  $self->[PROTO] = ['', 0, 0, ''];
  $self->_dispatch_send;
  $scope->{type} = 'sse';
  $self->_call_app($scope);
}

# The end of the client's input is how a stream learns that its client left
sub _half_close_ok ($self) { 0 }

sub _receive ($self) {
  my $f = $self->SUPER::_receive;
  # (an event already there is turned at once; a pending one when it comes)
  return PAGI::Server::Future::ready(_sse_event($self, $f->get)) if $f->is_ready;
  return $f->then(sub ($ev) { Future->done(_sse_event($self, $ev)) });
}

# HTTP's request and disconnect events as an event stream's
sub _sse_event ($self, $ev) {
  if ($ev->{type} eq 'http.request') { $ev->{type} = 'sse.request'; return $ev }
  my $rq = $self->[RQ];
  my $reason = $rq && $rq->[CSTATE][CS_REASON];
  return {type => 'sse.disconnect', reason => $reason // 'client_closed'};
}

# (the request's record is gone once the stream has ended: sends then do nothing)
sub _connected ($self) { $self->[RQ] && $self->[RQ][CSTATE][CS_CONNECTED] }

sub _send ($self, $ev) {
  my $type = ref $ev eq 'HASH' ? $ev->{type} // '' : '';
  my $mode = $self->[PROTO][MODE];
  if ($type eq 'sse.send' || $type eq 'sse.comment' || $type eq 'sse.keepalive') {
    return Future->fail("$type after sse.close\n") if $self->[PROTO][CLOSED];
    return Future->fail("$type after a declined (sse.http.response) start\n") if $mode eq 'decline';
    return Future->done if !_connected($self);
    if ($type eq 'sse.keepalive') {
      if (defined(my $err = keepalive_error($ev, $type))) { return Future->fail("$err\n") }
      $self->[PROTO][KA_INTERVAL] = $ev->{interval} // 0;
      $self->[PROTO][KA_COMMENT]  = $ev->{comment} // '';
      $self->_keepalive;
      return Future->done;
    }
    return Future->fail("$type before sse.start\n") if $mode ne 'stream';
    my ($bytes, $err);
    if ($type eq 'sse.send') {
      $self->_check_text('sse.send data', $ev->{data})
        if $self->[CFG][WARN_ENCODED] && defined $ev->{data} && !ref $ev->{data};
      # (the formatter's errors are sse.send's field checks: EventValidator asks it too)
      ($bytes, $err) = PAGI::Server::Protocol::SSE::format_event($ev);
    }
    else {
      if (defined($err = comment_error($ev))) { return Future->fail("$err\n") }
      $bytes = PAGI::Server::Protocol::SSE::format_comment($ev->{comment});
    }
    return Future->fail("$err\n") unless defined $bytes;
    $self->_write_body($bytes);
    $self->[DEADLINE] = $self->[LIVE][NOW] + $self->[CFG][SSE_IDLE_TIMEOUT]
      if $self->[DEADLINE_KIND] eq 'sse_idle';
    return $self->_send_future;
  }
  if ($type eq 'sse.start') {
    return Future->fail("sse.start after the response started\n") if $mode;
    return Future->done if !_connected($self);
    # Its fields (the codec's check of the headers, the shape first), before the
    # defaults below look at them
    if (defined(my $err = sse_start_error($ev))) { return Future->fail("$err\n") }
    my $headers = $ev->{headers} // [];
    my %have = map { lc($_->[0] // '') => 1 } @$headers;
    $headers = [@$headers];
    push @$headers, ['Content-Type', 'text/event-stream'] unless $have{'content-type'};
    push @$headers, ['Cache-Control', 'no-cache'] unless $have{'cache-control'};
    my $f = $self->SUPER::_send({type => 'http.response.start', status => $ev->{status} // 200,
      headers => $headers});
    return $f if $f->is_failed;
    # The head goes out now: the client is waiting for the stream to open. If it
    # cannot (a bad header), nothing was written and there is no stream to end.
    my $err = $self->_write_head;
    $self->[PROTO][MODE] = $err ? 'failed' : 'stream';
    if (!$err && !$self->[DEADLINE_KIND] and my $idle = $self->[CFG][SSE_IDLE_TIMEOUT]) {
      # sse_idle_timeout: nothing sent for that long ends the stream
      @$self[DEADLINE_KIND, DEADLINE] = ('sse_idle', $self->[LIVE][NOW] + $idle);
    }
    return $err ? Future->fail($err =~ s/http\.response\.start/sse.start/r) : Future->done;
  }
  if ($type eq 'sse.close') {
    return Future->done if $self->[PROTO][CLOSED] || $mode ne 'stream';
    $self->[PROTO][CLOSED] = 1;
    return $self->_end_stream;
  }
  # (the fullflush extension's event: HTTP's, for this stream's bytes too)
  return $self->SUPER::_send($ev) if $type eq 'http.fullflush';
  if ($type eq 'sse.http.response.start' || $type eq 'sse.http.response.body') {
    return Future->fail("$type after sse.start\n") if $mode eq 'stream';
    return Future->done if !_connected($self);
    # (its fields, under its own name; HTTP's send checks them again, as HTTP's)
    if (defined(my $err = send_error(sse => $ev))) { return Future->fail("$err\n") }
    $self->[PROTO][MODE]  = 'decline';
    $self->[KEEP] = 0;
    (my $http = $type) =~ s/\Asse\.//;
    return $self->SUPER::_send({%$ev, type => $http});
  }
  return Future->fail(send_error(sse => $ev) . "\n");
}

sub _end_stream ($self) {
  return Future->done if !_connected($self) || $self->[RQ][COMPLETE];
  $self->[KEEP] = 0;
  $self->_end_chunks;
  return $self->_response_complete;
}

sub _app_done ($self, $f) {
  # Returning ends an open stream the way sse.close does
  $self->_end_stream if $self->[PROTO][MODE] eq 'stream' && !$f->is_failed;
  $self->SUPER::_app_done($f);
}

# sse.keepalive: a comment every interval (0 = off; the last one given wins), once
# the stream is open
sub _keepalive ($self) {
  return $self->_timer('ka') unless $self->[PROTO][KA_INTERVAL];
  $self->_timer(ka => $self->[PROTO][KA_INTERVAL], sub {
    return if !_connected($self) || $self->[RQ][COMPLETE];
    if ($self->[PROTO][MODE] eq 'stream') {
      $self->_write_body(PAGI::Server::Protocol::SSE::format_comment($self->[PROTO][KA_COMMENT]));
      $self->[DEADLINE] = $self->[LIVE][NOW] + $self->[CFG][SSE_IDLE_TIMEOUT]
        if $self->[DEADLINE_KIND] eq 'sse_idle';
    }
    $self->_keepalive;
  });
}

sub _tick ($self, $now) {
  if ($self->[DEADLINE_KIND] eq 'sse_idle') {
    return if $now <= $self->[DEADLINE];
    # Nothing sent for sse_idle_timeout: the stream ends (cleanly), the app is told
    $self->[SERVER]->log(info => "event stream idle for $self->[CFG][SSE_IDLE_TIMEOUT] s (sse_idle_timeout): closing");
    $self->[DEADLINE_KIND] = '';
    $self->[KEEP] = 0;
    $self->_end_chunks unless $self->[RQ][COMPLETE];
    $self->_disconnect('idle_timeout', 1);
    return $self->_close_after_flush;
  }
  $self->SUPER::_tick($now);
}

# A retiring worker's soft stop ends a stream as the usual stop does
sub _soft_stop ($self) { $self->_shutdown }

# Server shutdown: an event stream never ends by itself, so a graceful stop ends it
# now (terminated cleanly; EventSource reconnects) and tells the app server_shutdown,
# instead of holding the stop for shutdown_timeout
sub _shutdown ($self, $force = 0) {
  if (!$force && $self->[PROTO][MODE] eq 'stream' && _connected($self) && !$self->[RQ][COMPLETE]) {
    $self->[KEEP] = 0;
    $self->_end_chunks;
    $self->_disconnect('server_shutdown', 1);
    return $self->_close_after_flush;
  }
  $self->SUPER::_shutdown($force);
}

1;

=head1 NAME

PAGI::Server::Connection::SSE - a PAGI::Server connection serving an SSE stream

=head1 DESCRIPTION

Internal. Requests whose C<Accept> contains C<text/event-stream> (any method) get an
C<sse> scope. C<sse.request> carries the request body, C<sse.start> opens the stream
(adding C<Content-Type: text/event-stream> and C<Cache-Control: no-cache> when the app
did not set them), C<sse.send> and C<sse.comment> write events, C<sse.keepalive>
sends comments on an interval, C<sse.close> or returning ends the stream, and
C<sse.http.response.*> declines with an ordinary response. A client that goes away
gets the app an C<sse.disconnect> with a reason. A graceful server stop ends open
streams at once (reason C<server_shutdown>).

=cut
