// How a process ended, decoded once from a wait status or siginfo.
#pragma once

namespace vigil {

struct ExitStatus {
  int code = -1;   // exit code when exited normally, else -1
  int signal = 0;  // terminating signal, else 0
  bool core = false;
  bool known = true;  // false: it died, but nobody could tell vigil how

  static ExitStatus unknown() {
    ExitStatus st;
    st.known = false;
    return st;
  }
  // From a wait(2) status word (also the exit_code of a proc-connector
  // exit event).
  static ExitStatus from_wait(int status) {
    ExitStatus st;
    if ((status & 0x7f) == 0) {
      st.code = (status >> 8) & 0xff;
    } else {
      st.signal = status & 0x7f;
      st.core = status & 0x80;
    }
    return st;
  }
};

}  // namespace vigil
