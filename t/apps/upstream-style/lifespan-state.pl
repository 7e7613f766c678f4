# Written in the style of upstream PAGI::Server's examples (our own code): lifespan
# startup puts a value into the shared state, each request reads it from its scope
use strict;
use warnings;
use Future::AsyncAwait;

my $app = async sub {
  my ($scope, $receive, $send) = @_;
  if ($scope->{type} eq 'lifespan') {
    while (1) {
      my $ev = await $receive->();
      if ($ev->{type} eq 'lifespan.startup') {
        $scope->{state}{motd} = 'state set at startup';
        await $send->({type => 'lifespan.startup.complete'});
      }
      elsif ($ev->{type} eq 'lifespan.shutdown') {
        await $send->({type => 'lifespan.shutdown.complete'});
        return;
      }
    }
  }
  my $motd = $scope->{state}{motd} // 'no state';
  await $send->({type => 'http.response.start', status => 200, headers => [['content-type', 'text/plain']]});
  await $send->({type => 'http.response.body', body => $motd});
};
$app;
