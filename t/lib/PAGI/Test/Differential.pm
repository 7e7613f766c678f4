package PAGI::Test::Differential;
use v5.32;
use warnings;
use experimental 'signatures';
use Exporter 'import';
use Test::More ();
use PAGI::Test::CodecCorpus qw(canon);

# The differential tests' runner (t/30 for HTTP/1.1, t/32 for WebSocket): calls one
# codec function of both backends with the same arguments and compares the results.
#
#   backends(pp => 'PAGI::...::PP', xs => 'PAGI::...::XS');
#   my ($pp, $xs) = run_both($fn, \@args, $flags, $post);   # canonical texts, or "DIED"
#   same($name, $fn, \@args, flags => 0, post => sub {...}) or diag(pop @FAILS);
#   tally_ok($count, $name);    # one test for a bulk loop of same() calls
#
# %WARNINGS counts the warnings each backend emitted; @FAILS collects the differences.

our @EXPORT_OK = qw(backends run_both same tally_ok @FAILS %WARNINGS);

our (%IMPL, @FAILS);
our %WARNINGS = (pp => 0, xs => 0);

sub backends (%impl) { %IMPL = %impl }

sub run_both ($fn, $args, $flags = 1, $post = undef) {
  my %out;
  for my $b (qw(pp xs)) {
    my @w;
    local $SIG{__WARN__} = sub { push @w, $_[0] };
    my @r = eval { $IMPL{$b}->can($fn)->(@$args) };
    $WARNINGS{$b} += @w;
    @r = map { $post->($_) } @r if $post && $@ eq '';
    $out{$b} = $@ ne '' ? 'DIED' : canon(\@r, $flags);
  }
  return ($out{pp}, $out{xs});
}

# Compares; a difference is kept in @FAILS, with both results
sub same ($name, $fn, $args, %opt) {
  my ($pp, $xs) = run_both($fn, $args, $opt{flags} // 1, $opt{post});
  return 1 if $pp eq $xs;
  push @FAILS, "$name\n  pp: $pp\n  xs: $xs";
  return 0;
}

sub tally_ok ($count, $name) {
  my @f = splice @FAILS;
  Test::More::ok(!@f, "$name ($count cases)")
    or Test::More::diag(join "\n", @f[0 .. ($#f < 9 ? $#f : 9)]);
}

1;
