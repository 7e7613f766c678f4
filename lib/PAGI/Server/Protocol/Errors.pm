package PAGI::Server::Protocol::Errors;
use strict;
use warnings;

our $VERSION = '0.001';

# The error kinds for the Perl side, read from THE error table, errors.tsv beside this
# file (build.rs generates the Rust enums from the same file): kind => [number,
# message], the number being the HTTP status (%HTTP, %H2REQ, %SERVER; %APP: 500), the
# close code (%WS, %WSCLOSE) or the RFC 9113 error code (%H2); %PROXY: 0 (nothing is
# answered)
our (%HTTP, %WS, %H2, %H2REQ, %APP, %SERVER, %WSCLOSE, %PROXY);
{
  (my $file = __FILE__) =~ s/Errors\.pm\z/errors.tsv/;
  open my $fh, '<', $file or die "PAGI::Server::Protocol::Errors: cannot read $file: $!\n";
  my %codec = (http => \%HTTP, ws => \%WS, h2 => \%H2, h2req => \%H2REQ, app => \%APP, server => \%SERVER,
    wsclose => \%WSCLOSE, proxy => \%PROXY);
  while (my $row = <$fh>) {
    next if $row =~ /\A(?:#|\s*\z)/;
    chomp $row;
    my ($codec, $kind, $number, $message) = split /\t/, $row;
    my $table = $codec{$codec} or die "PAGI::Server::Protocol::Errors: unknown codec '$codec' in $file\n";
    $table->{$kind} = [0 + $number, $message];
  }
}

# The reason phrases, status => phrase, from the table beside it (reasons.tsv, which
# build.rs reads too)
our %REASON;
{
  (my $file = __FILE__) =~ s/Errors\.pm\z/reasons.tsv/;
  open my $fh, '<', $file or die "PAGI::Server::Protocol::Errors: cannot read $file: $!\n";
  while (my $row = <$fh>) {
    next if $row =~ /\A(?:#|\s*\z)/;
    chomp $row;
    my ($status, $phrase) = split /\t/, $row;
    $REASON{$status} = $phrase;
  }
}

# The message of an app row (application misuse), with the name or value as given in
# place of its %s
sub app_message {
  my ($kind, $given) = @_;
  my $message = $APP{$kind}[1];
  $message =~ s/%s/$given \/\/ ''/e;
  return $message;
}

1;

=head1 NAME

PAGI::Server::Protocol::Errors - the codecs' error kinds, messages and numbers

=head1 DESCRIPTION

C<%HTTP> (HTTP/1.1 codec: HTTP status), C<%WS> (WebSocket codec: close code), C<%H2>
(HTTP/2 connection and stream errors: the RFC 9113 error code of the GOAWAY or
RST_STREAM), C<%H2REQ> (HTTP/2 requests refused with a status: the HTTP status),
C<%APP> (application misuse the codecs report: the message of the failed send,
C<app_message($kind, $given)> fills in its C<%s>), C<%SERVER> (responses the server
makes itself: the HTTP status) and C<%WSCLOSE> (WebSocket sessions the connection
fails: the close code), C<%PROXY> (PROXY protocol headers refused: 0, the connection
is closed without an answer), each C<< kind => [number, message] >>; and C<%REASON>, the reason phrases (status =>
phrase) from F<reasons.tsv>, read from F<errors.tsv> beside this module: the one
table of error kinds, from which F<build.rs> also generates the Rust enums (the XS
backend's). The pure-Perl backends and the facades read these hashes. To add a kind,
add a row to F<errors.tsv> (see its header); F<doc/codec.md> lists the kinds.

=cut
