package PAGI::Server::Spelling;
use strict;
use warnings;
use experimental 'signatures';

our $VERSION = '0.001';

# "Did you mean ...?": the nearest of some known names to a misspelt one (an option of
# new, a command-line flag)

# The candidate nearest to $name, at a distance under $limit, or undef
sub nearest ($name, $limit, @candidates) {
  my ($best, $dist) = (undef, $limit);
  for my $k (sort @candidates) {
    my $d = distance($name, $k);
    ($best, $dist) = ($k, $d) if $d < $dist;
  }
  return $best;
}

# The Levenshtein distance of two strings
sub distance ($a, $b) {
  my @prev = (0 .. length $b);
  for my $i (1 .. length $a) {
    my @cur = ($i);
    for my $j (1 .. length $b) {
      my $cost = substr($a, $i - 1, 1) eq substr($b, $j - 1, 1) ? 0 : 1;
      my $best = $prev[$j] + 1;
      $best = $cur[$j - 1] + 1 if $cur[$j - 1] + 1 < $best;
      $best = $prev[$j - 1] + $cost if $prev[$j - 1] + $cost < $best;
      push @cur, $best;
    }
    @prev = @cur;
  }
  return $prev[-1];
}

1;

=head1 NAME

PAGI::Server::Spelling - the nearest known name to a misspelt one

=head1 DESCRIPTION

Internal. C<nearest($name, $limit, @candidates)> (the closest candidate under the
Levenshtein distance C<$limit>, or undef) and C<distance($a, $b)>, for the "did you
mean" of unknown options (L<PAGI::Server::Config>) and command-line flags
(L<PAGI::Server::Runner>).

=cut
