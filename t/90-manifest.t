use v5.32;
use warnings;
use Test::More;
use ExtUtils::Manifest ();
use File::Find ();

# MANIFEST is what `make dist` ships (README "Installing"): every file it lists exists,
# it lists every file the build and the tests read, and, in a git checkout, it is
# exactly the tracked files less MANIFEST.SKIP (script/manifest --check).

my $listed = ExtUtils::Manifest::maniread();
ok(keys %$listed > 50, 'MANIFEST lists ' . keys(%$listed) . ' files');
my @gone = grep { !-e } sort keys %$listed;
is("@gone", '', 'every file MANIFEST lists exists');

# What the build reads: both Makefile.PLs, the XS glue, the crate (its manifest and
# lock, build.rs, every source and every target path Cargo.toml names), and every file
# under lib/ (the modules and the error table), bin/, src/ and t/ (the suite, its
# library and the apps it serves) and examples/ (t/45 serves them)
my $cargo = do { local (@ARGV, $/) = 'Cargo.toml'; <> };
my @needed = (qw(Makefile.PL perl/Makefile.PL perl/XS.xs Cargo.toml Cargo.lock build.rs),
  glob('perl/*.h'), $cargo =~ /^\s*path\s*=\s*"([^"]+)"/mg);
File::Find::find({no_chdir => 1, wanted => sub { push @needed, $_ if -f }},
  grep { -d } qw(lib bin src t examples));
my @missing = grep { !exists $listed->{$_} } @needed;
is("@missing", '', 'MANIFEST lists every file the build and the tests read (' . @needed . ')')
  or diag 'run script/manifest (and check that MANIFEST.SKIP does not match these)';

SKIP: {
  skip 'not a git checkout (an unpacked release): MANIFEST was checked when it was made', 1
    unless -e '.git' && !system('git rev-parse --is-inside-work-tree >/dev/null 2>&1');
  my $out = `$^X script/manifest --check 2>&1`;
  is($?, 0, 'MANIFEST is the tracked files less MANIFEST.SKIP (script/manifest --check)')
    or diag $out;
}

done_testing;
