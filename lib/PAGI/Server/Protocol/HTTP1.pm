package PAGI::Server::Protocol::HTTP1;
use strict;
use warnings;

our $VERSION = '0.001';

# The HTTP/1.1 codec seam: the same few functions from ::PP (Perl) or ::XS (Rust), as
# PAGI::Server::Protocol::Backend chose (PAGI_SERVER_BACKEND=pp|xs forces one; unset
# means XS when it is built, else PP).
our @FUNCTIONS = qw(parse_request decode_chunked serialize_response check_headers serialize_chunk
  serialize_trailers connection_info accept_socket set_server_header);

# The codec's named numbers, defined here once; ::PP and the connection use them by name
# (::XS has them in Rust: src/response.rs, src/chunked.rs)
# serialize_response's flags
use constant { F_HEAD => 1, F_CLOSE => 2, F_HTTP10 => 4, F_UPGRADE => 8 };
# Body framing modes returned by serialize_response
use constant { M_NONE => 0, M_LENGTH => 1, M_CHUNKED => 2, M_CLOSE => 3 };
# decode_chunked's states besides n > 0 (data bytes left): a size line is next, the CRLF
# after data, the trailer section, done
use constant { CHUNK_SIZE => -1, CHUNK_DATA_END => -2, CHUNK_TRAILER => -3, CHUNK_DONE => -4 };

use PAGI::Server::Protocol::Errors;
use PAGI::Server::Protocol::Backend;

our $IMPLEMENTATION = PAGI::Server::Protocol::Backend::install(__PACKAGE__, @FUNCTIONS);

sub backend { $IMPLEMENTATION }

# The HTTP status for an error kind (from the one table, errors.tsv)
sub error_status { ($PAGI::Server::Protocol::Errors::HTTP{$_[0]} // [400])->[0] }

# The reason phrase of a status (the one table, reasons.tsv): the body of the
# responses the server writes itself, whichever backend is loaded
sub error_reason { $PAGI::Server::Protocol::Errors::REASON{$_[0]} // 'Error' }

1;

=head1 NAME

PAGI::Server::Protocol::HTTP1 - the HTTP/1.1 codec facade (pure Perl or Rust)

=head1 SYNOPSIS

  use PAGI::Server::Protocol::HTTP1;
  my ($req, $consumed) = PAGI::Server::Protocol::HTTP1::parse_request(
    $buf, $max_header_size, $max_headers, $max_line);
  print PAGI::Server::Protocol::HTTP1::backend();   # "XS" or "PP"

=head1 DESCRIPTION

Every byte of HTTP/1.1 that PAGI::Server reads or writes goes through the functions
of this module: C<parse_request>, C<decode_chunked>, C<serialize_response>,
C<check_headers>, C<serialize_chunk>, C<serialize_trailers>, C<connection_info> and
C<set_server_header>. They are pure functions (no state but the cached Date line and
the Server field's value, one per process) with one contract, written down in
F<doc/codec.md>, and two implementations:
L<PAGI::Server::Protocol::HTTP1::XS> (Rust, through XS) and
L<PAGI::Server::Protocol::HTTP1::PP> (pure Perl).

=head1 ENVIRONMENT

=over

=item PAGI_SERVER_BACKEND

C<xs> demands the Rust backend (and dies, saying how to build it, when it is not
built); C<pp> forces pure Perl; unset or C<auto> picks XS when it loads, else PP.
L<PAGI::Server::Protocol::Backend> makes the choice once, for this codec and the
WebSocket one; it is kept in C<$PAGI::Server::Protocol::HTTP1::IMPLEMENTATION>.

=back

=head1 FUNCTIONS

=head2 error_status

  my $status = error_status($kind);

The HTTP status for one of the codec's error kinds (from the one table,
F<errors.tsv>, through L<PAGI::Server::Protocol::Errors>).

=head1 CONSTANTS

C<F_HEAD>, C<F_CLOSE>, C<F_HTTP10>, C<F_UPGRADE> (C<serialize_response>'s flags); C<M_NONE>,
C<M_LENGTH>, C<M_CHUNKED>, C<M_CLOSE> (its framing modes); C<CHUNK_SIZE>,
C<CHUNK_DATA_END>, C<CHUNK_TRAILER>, C<CHUNK_DONE> (C<decode_chunked>'s states). See
F<doc/codec.md>.

=head2 error_reason

  my $text = error_reason($status);

The reason phrase of a status (the one table, F<reasons.tsv>), for the responses the
server writes itself, the same whichever backend is active; C<Error> for a status
without one.

=head1 SEE ALSO

L<PAGI::Server>, F<doc/codec.md>.

=cut
