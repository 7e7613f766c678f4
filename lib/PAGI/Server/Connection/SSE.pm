package PAGI::Server::Connection::SSE;
use strict;
use warnings;
use experimental 'signatures';
use Future;
use PAGI::Server::Connection ();
use PAGI::Server::Connection::Fields;
use PAGI::Server::ConnectionState qw(:fields);
use PAGI::Server::Protocol::SSE;
our @ISA = ('PAGI::Server::Connection');

our $VERSION = '0.001';

# A connection serving a Server-Sent Events stream: the request (any method) was
# read as HTTP; the app's sse.* events become a chunked text/event-stream response,
# or, declined, an ordinary HTTP response. The connection closes when it ends.

# The end of the client's input is how a stream learns that its client left
sub _half_close_ok ($self) { 0 }

sub _receive ($self) {
  my $f = $self->SUPER::_receive;
  return $f->then(sub ($ev) {
    if ($ev->{type} eq 'http.request') { $ev->{type} = 'sse.request'; return Future->done($ev) }
    my $reason = $self->[CSTATE] && $self->[CSTATE][CS_REASON];
    return Future->done({type => 'sse.disconnect', reason => $reason // 'client_closed'});
  });
}

sub _send ($self, $ev) {
  my $type = ref $ev eq 'HASH' ? $ev->{type} // '' : '';
  my $mode = $self->[SSE] // '';
  if ($type eq 'sse.send' || $type eq 'sse.comment' || $type eq 'sse.keepalive') {
    return Future->fail("$type after sse.close\n") if $self->[SSE_CLOSED];
    return Future->fail("$type after a declined (sse.http.response) start\n") if $mode eq 'decline';
    return Future->done if !$self->[CSTATE] || !$self->[CSTATE][CS_CONNECTED];
    if ($type eq 'sse.keepalive') {
      my $interval = $ev->{interval} // 0;
      return Future->fail("sse.keepalive: interval must be a number >= 0\n")
        unless $interval =~ /\A[0-9]+(?:\.[0-9]+)?\z/;
      $self->[KA_INTERVAL] = $interval;
      $self->[KA_COMMENT]  = $ev->{comment} // '';
      $self->_keepalive;
      return Future->done;
    }
    return Future->fail("$type before sse.start\n") if $mode ne 'stream';
    my ($bytes, $err);
    if ($type eq 'sse.send') {
      $self->_check_text('sse.send data', $ev->{data})
        if $self->[SERVER]{warn_encoded} && defined $ev->{data} && !ref $ev->{data};
      ($bytes, $err) = PAGI::Server::Protocol::SSE::format_event($ev);
    }
    else {
      return Future->fail("sse.comment: comment is required\n") unless defined $ev->{comment};
      $bytes = PAGI::Server::Protocol::SSE::format_comment($ev->{comment});
    }
    return Future->fail("$err\n") unless defined $bytes;
    $self->_write_body($bytes);
    $self->[DEADLINE] = $PAGI::Server::NOW + $self->[SERVER]{sse_idle_timeout}
      if $self->[DEADLINE_KIND] eq 'sse_idle';
    return $self->_send_future;
  }
  if ($type eq 'sse.start') {
    return Future->fail("sse.start after the response started\n") if $mode;
    return Future->done if !$self->[CSTATE][CS_CONNECTED];
    my $headers = $ev->{headers} // [];
    # The codec's check (the shape first), before the defaults below look at them
    if (defined(my $err = PAGI::Server::Connection::check_headers($headers))) {
      return Future->fail("sse.start: $err\n");
    }
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
    $self->[SSE] = $err ? 'failed' : 'stream';
    if (!$err && !$self->[DEADLINE_KIND] and my $idle = $self->[SERVER]{sse_idle_timeout}) {
      # sse_idle_timeout: nothing sent for that long ends the stream
      @$self[DEADLINE_KIND, DEADLINE] = ('sse_idle', $PAGI::Server::NOW + $idle);
    }
    return $err ? Future->fail($err =~ s/http\.response\.start/sse.start/r) : Future->done;
  }
  if ($type eq 'sse.close') {
    return Future->done if $self->[SSE_CLOSED] || $mode ne 'stream';
    $self->[SSE_CLOSED] = 1;
    return $self->_end_stream;
  }
  if ($type eq 'sse.http.response.start' || $type eq 'sse.http.response.body') {
    return Future->fail("$type after sse.start\n") if $mode eq 'stream';
    return Future->done if !$self->[CSTATE][CS_CONNECTED];
    $self->[SSE]  = 'decline';
    $self->[KEEP] = 0;
    (my $http = $type) =~ s/\Asse\.//;
    return $self->SUPER::_send({%$ev, type => $http});
  }
  return Future->fail("unknown event type '$type' for an sse scope\n");
}

sub _end_stream ($self) {
  return Future->done if $self->[COMPLETE] || !$self->[CSTATE][CS_CONNECTED];
  $self->[KEEP] = 0;
  $self->_write("0\r\n\r\n") if $self->[RESP_MODE] == PAGI::Server::Connection::M_CHUNKED;
  return $self->_response_complete;
}

sub _app_done ($self, $f) {
  # Returning ends an open stream the way sse.close does
  $self->_end_stream if ($self->[SSE] // '') eq 'stream' && !$f->is_failed;
  $self->SUPER::_app_done($f);
}

# sse.keepalive: a comment every interval (0 = off; the last one given wins), once
# the stream is open
sub _keepalive ($self) {
  return $self->_timer(KA_TIMER) unless $self->[KA_INTERVAL];
  $self->_timer(KA_TIMER, $self->[KA_INTERVAL], sub {
    return if $self->[COMPLETE] || !$self->[CSTATE] || !$self->[CSTATE][CS_CONNECTED];
    if (($self->[SSE] // '') eq 'stream') {
      $self->_write_body(PAGI::Server::Protocol::SSE::format_comment($self->[KA_COMMENT]));
      $self->[DEADLINE] = $PAGI::Server::NOW + $self->[SERVER]{sse_idle_timeout}
        if $self->[DEADLINE_KIND] eq 'sse_idle';
    }
    $self->_keepalive;
  });
}

sub _tick ($self, $now) {
  if ($self->[DEADLINE_KIND] eq 'sse_idle') {
    return if $now <= $self->[DEADLINE];
    # Nothing sent for sse_idle_timeout: the stream ends (cleanly), the app is told
    $self->[SERVER]->log(info => "event stream idle for $self->[SERVER]{sse_idle_timeout} s (sse_idle_timeout): closing");
    $self->[DEADLINE_KIND] = '';
    $self->[KEEP] = 0;
    $self->_write("0\r\n\r\n") if $self->[RESP_MODE] == PAGI::Server::Connection::M_CHUNKED && !$self->[COMPLETE];
    $self->_disconnect('idle_timeout', 1);
    return $self->_close_after_flush;
  }
  $self->SUPER::_tick($now);
}

# Server shutdown: an event stream never ends by itself, so a graceful stop ends it
# now (terminated cleanly; EventSource reconnects) and tells the app server_shutdown,
# instead of holding the stop for shutdown_timeout
sub _shutdown ($self, $force = 0) {
  if (!$force && ($self->[SSE] // '') eq 'stream' && !$self->[COMPLETE]
    && $self->[CSTATE] && $self->[CSTATE][CS_CONNECTED]) {
    $self->[KEEP] = 0;
    $self->_write("0\r\n\r\n") if $self->[RESP_MODE] == PAGI::Server::Connection::M_CHUNKED;
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
