package PAGI::Server::Protocol::Errors;
use strict;
use warnings;

our $VERSION = '0.001';

# The codecs' error kinds for the Perl side, read from THE error table, errors.tsv beside
# this file (build.rs generates the Rust enums from the same file): kind => [number,
# message], the number being the HTTP status (%HTTP, %H2REQ), the close code (%WS) or
# the RFC 9113 error code (%H2)
our (%HTTP, %WS, %H2, %H2REQ);
{
  (my $file = __FILE__) =~ s/Errors\.pm\z/errors.tsv/;
  open my $fh, '<', $file or die "PAGI::Server::Protocol::Errors: cannot read $file: $!\n";
  my %codec = (http => \%HTTP, ws => \%WS, h2 => \%H2, h2req => \%H2REQ);
  while (my $row = <$fh>) {
    next if $row =~ /\A(?:#|\s*\z)/;
    chomp $row;
    my ($codec, $kind, $number, $message) = split /\t/, $row;
    $codec{$codec}{$kind} = [0 + $number, $message];
  }
}

1;

=head1 NAME

PAGI::Server::Protocol::Errors - the codecs' error kinds, messages and numbers

=head1 DESCRIPTION

C<%HTTP> (HTTP/1.1 codec: HTTP status), C<%WS> (WebSocket codec: close code), C<%H2>
(HTTP/2 connection and stream errors: the RFC 9113 error code of the GOAWAY or
RST_STREAM) and C<%H2REQ> (HTTP/2 requests refused with a status: the HTTP status),
each C<< kind => [number, message] >>, read from F<errors.tsv> beside this module: the one
table of error kinds, from which F<build.rs> also generates the Rust enums (the XS
backend's). The pure-Perl backends and the facades read these hashes. To add a kind,
add a row to F<errors.tsv> (see its header); F<doc/codec.md> lists the kinds.

=cut
