// Helpers shared by the privacy tests: a throwaway master key and the bytes of every file under a directory
// (for the byte searches that prove no plaintext is left).
#pragma once

#include <filesystem>
#include <string>

#include "log/file.h"

namespace cairn::privacy_test {

inline constexpr const char* kMaster = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

inline std::string all_bytes_under(const std::string& dir) {
  std::string out;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir))
    if (f.is_regular_file()) {
      auto t = log::read_whole_file(f.path().string());
      if (t.ok()) out += *t;
    }
  return out;
}

}  // namespace cairn::privacy_test
