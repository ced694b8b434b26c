#include "cli/app.h"

namespace cairn::cli {

void Context::add_remote_flags(CLI::App* c) {
  c->add_option("--url", remote.url, "a running cairnd (http://HOST:PORT) instead of --data")->envname("CAIRN_URL");
  c->add_option("--key", remote.key, "API key for --url")->envname("CAIRN_KEY");
}

void Context::add_store_flags(CLI::App* c, bool writes) {
  c->add_option("--data", flags.data, "data directory")->envname("CAIRN_DATA")->capture_default_str();
  c->add_option("--backend", flags.backend, "a PostgreSQL database (postgres://...) instead of the embedded store")
      ->envname("CAIRN_BACKEND");
  c->add_option("--key-store", flags.key_store, "personal data's key store directory, outside --data (docs/privacy.md)")
      ->envname("CAIRN_KEY_STORE");
  c->add_option("--master-key-file", flags.master_key_file, "the key store's master key (base64); or CAIRN_MASTER_KEY")
      ->envname("CAIRN_MASTER_KEY_FILE");
  if (writes) {
    c->add_option("--durability", flags.durability, "fsync (default) or none (tests and benchmarks only)")
        ->envname("CAIRN_DURABILITY")
        ->check(CLI::IsMember({"fsync", "none"}));
    c->add_option("--segment-size", flags.segment_size, "bytes per log segment before it is sealed")
        ->envname("CAIRN_SEGMENT_SIZE")
        ->check(CLI::Range(uint64_t{4096}, uint64_t{1} << 40));
  }
}

void Context::add_dir(CLI::App* c) {
  c->add_option("dir", dir, "data directory (default: --data, CAIRN_DATA or ./data)");
  c->add_option("--data", flags.data, "data directory")->envname("CAIRN_DATA");
}

CLI::App* Context::add_store_command(CLI::App& parent, const std::string& name, const std::string& help, bool writes) {
  CLI::App* c = parent.add_subcommand(name, help);
  add_store_flags(c, writes);
  add_remote_flags(c);
  return c;
}

int Context::run() const {
  for (const auto& [command, run] : commands_)
    if (*command) return run();
  return 2;
}

}  // namespace cairn::cli
