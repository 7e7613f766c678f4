# A small Dancer2 application for t/71-psgi-frameworks.t: a page, a form POST, a streamed response
package FwDancer;
use Dancer2;
set logger => 'null';
get '/' => sub { 'Hello from Dancer2' };
post '/form' => sub { my $name = body_parameters->get('name'); "Hi $name" };
get '/stream' => sub {
  delayed {
    response_header 'Content-Type' => 'text/plain';
    flush;
    content "part 1;";
    content "part 2;";
    done;
  };
};
FwDancer->to_app;
