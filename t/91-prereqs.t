use v5.32;
use warnings;
use experimental 'signatures';
use Test::More;
use JSON::PP ();
use File::Find ();

# The prerequisites Makefile.PL declares (as MYMETA.json has them) against what the code
# loads: lib/, bin/ and examples/ (what users run) load without eval only what runtime
# requires, and under eval only what runtime requires, recommends or suggests; t/
# likewise against test and runtime prerequisites (a test that skips without a module
# needs it at least suggested). And nothing is declared that nothing loads.
# Read from the source: `use`/`require` of a module name (dynamic requires, POD and
# here-documents, which hold code that tests write to files, are not counted); t/apps/
# is not read (only tests that check for their modules first serve those apps).

-e 'MYMETA.json' or plan skip_all => 'no MYMETA.json: run perl Makefile.PL first';
my $meta = JSON::PP->new->decode(do { local (@ARGV, $/) = 'MYMETA.json'; <> });
sub declared (@where) {
  my %m;
  for (@where) {
    my ($phase, $rel) = @$_;
    %m = (%m, %{$meta->{prereqs}{$phase}{$rel} || {}});
  }
  return \%m;
}
my %rule = (
  runtime => {required => declared([runtime => 'requires']),
    optional => declared(map { [runtime => $_] } qw(requires recommends suggests))},
  test => {required => declared(map({ [$_ => 'requires'] } qw(runtime test))),
    optional => declared(map({ my $p = $_; map { [$p => $_] } qw(requires recommends suggests) } qw(runtime test)))},
);

# Our own modules: those under lib/ and t/lib/, and packages the scanned files declare
my %ours;
my @files;
File::Find::find({no_chdir => 1, wanted => sub {
  push @files, $_ if -f && (/\.(?:pm|t)\z/ || m{\A(?:bin|examples)/});
  $ours{s{\A(?:t/)?lib/}{}r =~ s{/}{::}gr =~ s/\.pm\z//r} = 1 if m{\A(?:t/)?lib/.*\.pm\z};
}}, grep { -e } qw(lib bin examples t/lib), glob('t/*.t'));

my %loads;    # file => [[module, optional], ...]
for my $file (sort @files) {
  my $code = do { local (@ARGV, $/) = $file; <> };
  $code =~ s/^__(?:END|DATA)__\n.*//ms;
  $code =~ s/^=[a-z]\w*.*?(?:^=cut\b[^\n]*\n|\z)//msg;
  # here-documents: from the line after <<TAG to the line TAG
  while ($code =~ /<<~?(['"]?)([A-Za-z_]\w*)\1[^\n]*\n/g) {
    my ($tag, $start) = ($2, pos $code);
    $code =~ /^\s*\Q$tag\E\n/mgc or last;
    substr($code, $start, pos($code) - $start) = "\n";
    pos($code) = $start;
  }
  $ours{$_} = 1 for $code =~ /^\s*package\s+([\w:]+)/mg;
  my @found;
  for my $block ($code =~ /\beval\s*\{([^{}]*)\}/g) {
    push @found, map { [$_, 1] } $block =~ /\brequire\s+([A-Z][\w:]*)\s*;/g;
  }
  $code =~ s/\beval\s*\{[^{}]*\}//g;
  push @found, map { [$_, 0] } $code =~ /^\s*(?:use|require)\s+([A-Z][\w:]*)/mg;
  $loads{$file} = \@found;
}

# A module counts as declared through the distribution's main module it ships in
my @SHIPPED_IN = (
  [qr/\AIO::Async::(?:Loop|Future|Internals::TimeQueue)\z/ => 'IO::Async'],
  [qr/\AFuture::IO::Impl::IOAsync\z/ => 'IO::Async'],    # (IO::Async ships it)
  [qr/\ALinux::FD::Timer\z/ => 'Linux::FD'],
  [qr/\APlack::/ => 'Plack'],
  [qr/\AMojo::/ => 'Mojolicious'],
  [qr/\AProtocol::HTTP2::/ => 'Protocol::HTTP2'],
);
sub dist_of ($module) {
  for (@SHIPPED_IN) { return $_->[1] if $module =~ $_->[0] }
  return $module;
}
# Files that are loaded only when a feature is asked for: their loads are optional (so
# are the examples')
my %ONLY_WHEN = ('lib/PAGI/Server/TLS.pm' => 'TLS is configured (PAGI::Server requires it then)',
  (map { ("lib/PAGI/Server/Protocol/HTTP2/$_" => 'HTTP/2 is served with the pure-Perl codec') }
    qw(PP.pm PP/HPACK.pm PP/Block.pm PP/Output.pm)));

my $checked = 0;
my %loaded;
for my $file (sort keys %loads) {
  my $phase = $file =~ m{\At/} ? 'test' : 'runtime';
  # (a file that checks for a distribution under eval, as a test does before it skips,
  # may then load more of it without)
  my %checked_for = map { dist_of($_->[0]) => 1 } grep { $_->[1] } @{$loads{$file}};
  for (@{$loads{$file}}) {
    my ($module, $optional) = @$_;
    next if $ours{$module};
    my $dist = dist_of($module);
    $optional ||= exists $ONLY_WHEN{$file} || $checked_for{$dist} || $file =~ m{\Aexamples/};
    $loaded{$dist} = 1;
    $checked++;
    ok(exists $rule{$phase}{$optional ? 'optional' : 'required'}{$dist},
      "$file loads $module" . ($dist ne $module ? " ($dist)" : '') . ($optional ? ' (optional)' : '')
      . ": declared") or diag "add $dist to Makefile.PL's $phase "
      . ($optional ? 'recommends or suggests' : 'requirements');
  }
}
cmp_ok($checked, '>', 100, "$checked module loads checked");

# Nothing is declared that nothing loads (a stale entry), but for the modules loaded by
# name at run time: loop classes (--loop, t/57), and Net::SSLeay, which TLS.pm only
# calls (IO::Socket::SSL loads it)
for my $phase (qw(runtime test)) {
  for my $rel (qw(requires recommends suggests)) {
    for my $module (sort keys %{$meta->{prereqs}{$phase}{$rel} || {}}) {
      next if $module eq 'perl' || $module =~ /\A[a-z]/;    # the version, pragmas
      ok($loaded{$module} || $module =~ /\AIO::Async::Loop::/ || $module eq 'Net::SSLeay'
        || $module =~ /\A(?:Dancer2|Mojolicious)\z/ && -e 't/71-psgi-frameworks.t',
        "$phase $rel $module: something loads it");
    }
  }
}

done_testing;
