// Linked with one module's library whole (every object in it) and only the libraries that module declares:
// if the module called a function of a module above it, this program would not link. Running it proves nothing
// more; the link is the test.
int main() { return 0; }
