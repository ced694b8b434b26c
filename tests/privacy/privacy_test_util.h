// Helpers shared by the privacy tests: a throwaway master key, the bytes of every file under a directory (for
// the byte searches that prove no plaintext is left), and an event's stored form as an import.
#pragma once

#include <algorithm>
#include <filesystem>
#include <string>

#include "cairn/store.h"
#include "base/file.h"

namespace cairn::privacy_test {

inline constexpr const char* kMaster = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

inline std::string all_bytes_under(const std::string& dir) {
  std::string out;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir))
    if (f.is_regular_file()) {
      auto t = base::read_whole_file(f.path().string());
      if (t.ok()) out += *t;
    }
  return out;
}

// An event in its stored form as an import takes it (what cairn export writes for it).
inline ImportEvent import_event_of(const StoredEventView& v) {
  ImportEvent ie;
  ie.stream = std::string(v.stream);
  ie.revision = v.revision;
  ie.id = v.id;
  ie.type = std::string(v.type);
  ie.recorded_ns = v.recorded_ns;
  ie.content_type = v.content_type;
  ie.metadata = std::string(v.metadata);
  ie.data = std::string(v.data);
  std::copy(v.digest_salt.begin(), v.digest_salt.end(), ie.digest_salt.begin());
  ie.sealed_parts = v.sealed_parts;
  return ie;
}

}  // namespace cairn::privacy_test
