// Errors. NN_CHECK is for user mistakes and bad input: it throws nn::Error with a message that
// says what is wrong and where. NN_ASSERT is for internal invariants (a bug in nn if it fires).
// The library never calls exit() and never prints on its own.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace nn {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
template <typename... Args>
std::string concat_message(const Args&... args) {
  std::ostringstream out;
  ((out << args), ...);
  return out.str();
}
[[noreturn]] void throw_error(const char* file, int line, const std::string& message);
[[noreturn]] void throw_internal(const char* file, int line, const char* condition,
                                 const std::string& message);
}  // namespace detail

}  // namespace nn

#define NN_CHECK(cond, ...)                                                          \
  do {                                                                               \
    if (!(cond)) ::nn::detail::throw_error(__FILE__, __LINE__,                       \
                                           ::nn::detail::concat_message(__VA_ARGS__)); \
  } while (0)

#define NN_ASSERT(cond, ...)                                                          \
  do {                                                                                \
    if (!(cond)) ::nn::detail::throw_internal(__FILE__, __LINE__, #cond,              \
                                              ::nn::detail::concat_message(__VA_ARGS__)); \
  } while (0)
