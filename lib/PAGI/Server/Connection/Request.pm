package PAGI::Server::Connection::Request;
use strict;
use warnings;
use experimental 'signatures';

our $VERSION = '0.001';

# The record of the request being served on a connection (an HTTP request, an SSE
# stream or a WebSocket session): made by start() once its head is parsed, held in
# the connection's field RQ, dropped when the request is done, so nothing of one
# request can leak into the next. Its fields, in index order, with their values at
# the start of a request: a new per-request field is one line in this list. Most
# start unset (undef, which reads as 0, '' and false); the ones a keep-alive GET sets
# come first.
my @SPEC;
BEGIN {
  @SPEC = (
    # given to start()
    req         => undef,    # the scope (the parser's result hash, completed)
    facts       => undef,    # the parser's other facts (FACT_* indexes, below)
    cstate      => undef,    # the scope's pagi.connection object
    rflags      => undef,    # response framing known from the request (F_HEAD, F_HTTP10)
    # the application
    app_running => 1,        # it has not returned yet
    # the response
    started     => undef,    # http.response.start seen
    status      => undef,
    headers     => undef,
    flags       => undef,    # framing flags for serialize_response
    trailers    => undef,    # trailers => 1 in the start
    head_sent   => undef,    # the head is written
    complete    => undef,    # the final body (or the trailers) written
    sent_bytes  => undef,    # body bytes, for the access log
    body_final  => undef,    # the app has been given more => 0 (its first receive, often)
    resp_mode   => undef,    # the body's framing, as serialize_response chose it (M_*)
    resp_left   => undef,    # Content-Length bytes still to write
    req_time    => undef,    # when the request started (for the access log)
    # the application, when it does not finish at once
    app_future  => undef,    # its Future, while it runs
    recv_wait   => undef,    # the Future a $receive waits on
    # the request body
    body_mode   => undef,    # unset: none (or all of it read); 1: Content-Length; 2: chunked
    body_open   => undef,    # 1: some of it is still to be read from the socket
    body_left   => undef,    # Content-Length bytes still to read
    chunk_state => undef,    # the chunked decoder's state (decode_chunked)
    body_buf    => undef,    # read, not yet given to the app
    body_seen   => undef,    # bytes read so far (for the body size limit)
    draining    => undef,    # reading the unread rest of a body to drop it
    continued   => undef,    # "100 Continue" written
    half_closed => undef,    # the client shut its sending side after the request
  );
}
use PAGI::Server::Record map { $SPEC[2 * $_] } 0 .. $#SPEC / 2;
# What start() sets after the four values it is given: the start values, and room
# (unset fields) up to the last field that a plain request sets (a receive included),
# so that it never has to grow the array; the fields after those are added when they
# are set
my @STARTS = map { $SPEC[2 * $_ + 1] } 4 .. BODY_FINAL;

# The parser's facts beyond the scope keys (doc/codec.md), in an array: FACT_CLOSE is
# the index of "close", and so on; @FACT_KEYS names them in index order
our @FACT_KEYS;
BEGIN {
  @FACT_KEYS = qw(close content_length chunked upgrade ws_key ws_version sse expect_continue);
}
use constant {map { ('FACT_' . uc $FACT_KEYS[$_] => $_) } 0 .. $#FACT_KEYS};
our @EXPORT_OK;
push @EXPORT_OK, map { 'FACT_' . uc } @FACT_KEYS;
our %EXPORT_TAGS;
$EXPORT_TAGS{facts} = [map { 'FACT_' . uc } @FACT_KEYS];

# The record of a request that starts: start($req, $facts, $cstate, $rflags), its
# scope, facts, pagi.connection object and response flags, the rest at their start
# values (a function without a signature: it runs once per request)
sub start { bless [@_, @STARTS], __PACKAGE__ }

1;

=head1 NAME

PAGI::Server::Connection::Request - the record of one request on a connection

=head1 DESCRIPTION

Internal. An array record (L<PAGI::Server::Record>) made by C<start> when a request
head has been parsed and dropped when the request is done: its application, its body as it
is read, and its response as it is written. C<use PAGI::Server::Connection::Request
qw(:fields :facts)> imports the field indexes (C<STARTED>, C<BODY_OPEN>, ...) and
the indexes of the parser's facts (C<FACT_CLOSE>, C<FACT_CHUNKED>, ...).

=cut
