// vigil token add|remove NAME.
#include <cstdio>
#include <iostream>

#include "host/api/tokens.hpp"
#include "host/cli/cli.hpp"

namespace vigil::cli {

int cmd_token(const TokenArgs& a) {
  std::string error;
  if (a.action == "add") {
    std::string token;
    if (!TokenFile::add(a.file, a.name, token, error)) {
      std::cerr << "vigil: token add: " << error << "\n";
      return kExitFailed;
    }
    // The token on stdout alone (scripts capture it); the rest on stderr.
    std::cout << token << "\n";
    std::cerr << "vigil: token '" << a.name << "' added to " << a.file
              << " (only its hash is kept: store the token now); vigil reload to use it\n";
    return 0;
  }
  if (!TokenFile::remove(a.file, a.name, error)) {
    std::cerr << "vigil: token remove: " << error << "\n";
    return kExitFailed;
  }
  std::cerr << "vigil: token '" << a.name << "' removed from " << a.file
            << "; vigil reload to refuse it\n";
  return 0;
}

}  // namespace vigil::cli
