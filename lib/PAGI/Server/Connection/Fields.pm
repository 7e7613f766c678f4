package PAGI::Server::Connection::Fields;
use strict;
use warnings;

our $VERSION = '0.001';

# The fields of a connection object, which is an array: a request reads and writes
# about 150 of them, and an array element costs about half of a hash lookup. One list
# for every class that uses the object (Connection, its WebSocket and SSE subclasses,
# TLS, Transport, the server's accept path); each name becomes an upper-case index
# constant, exported: $self->[PHASE] is the field "phase", and
# `delete $self->[RECV_WAIT]` takes a field's value and clears it.
our @FIELDS;
BEGIN {
  @FIELDS = qw(
    server loop fh fd rbuf wbuf phase eof reading keep client server_addr
    receive send on_read on_write tls deadline deadline_kind
    in_process corked wwatch body_done half_closed body_mode transport req_time
    chunk_state body_left cstate app_future body_seen draining body_buf
    recv_wait started complete body_final facts continued head_sent trailers
    status headers flags sent_bytes rflags resp_mode resp_left drain app_running
    wdeadline req linger ws inbox connected msg_op msg connect_sent denied
    ws_disconnect answered deny ping_interval ping_timeout ka_timer
    pong_timer msg_valid sse sse_closed ka_interval ka_comment tls_rw
    tls_ww write_high write_low text_warned
  );
}
use constant {map { (uc $FIELDS[$_] => $_) } 0 .. $#FIELDS};

# The parser's facts beyond the scope keys (doc/codec.md), kept per request in an
# array too: FACT_CLOSE is the index of "close", and so on
our @FACT_KEYS;
BEGIN {
  @FACT_KEYS = qw(close content_length chunked upgrade ws_key ws_version sse expect_continue);
}
use constant {map { ('FACT_' . uc $FACT_KEYS[$_] => $_) } 0 .. $#FACT_KEYS};

use Exporter 'import';
our @EXPORT = ((map { uc } @FIELDS), (map { 'FACT_' . uc } @FACT_KEYS));

1;

=head1 NAME

PAGI::Server::Connection::Fields - the field indexes of a connection object

=head1 DESCRIPTION

Internal. Exports one constant per field of L<PAGI::Server::Connection> (C<PHASE>,
C<RBUF>, C<WBUF>, ...); C<@PAGI::Server::Connection::Fields::FIELDS> lists the
names in index order, for debugging (C<< map { $FIELDS[$_] => $conn->[$_] } >>).
It also exports C<FACT_CLOSE>, C<FACT_CONTENT_LENGTH>, ... : the indexes of a
request's parser facts (C<@FACT_KEYS>, in index order).

=cut
