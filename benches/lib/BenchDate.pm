package BenchDate;
use strict;
use warnings;

# The Date line of the baseline responders (raw_http.pl, limit_http.pl), cached for
# the second it names, as pagi-server's is: so the bytes on the wire compare
my ($at, $line) = (-1, '');
my @DAY = qw(Sun Mon Tue Wed Thu Fri Sat);
my @MON = qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec);

sub date_line {
  my $now = time;
  return $line if $now == $at;
  my @t = gmtime($at = $now);
  return $line = sprintf "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
    $DAY[$t[6]], $t[3], $MON[$t[4]], $t[5] + 1900, @t[2, 1, 0];
}

1;
