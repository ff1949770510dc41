// What the tests ask of an nn::Error: its message, and whether a text contains a part.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "nn/error.h"

// The message of the nn::Error that `f` throws; "" and a test failure when it throws none.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const nn::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no nn::Error thrown";
  return "";
}

// The message of the nn::Error that `f` throws, or "" when it succeeds (for inputs that may be
// accepted or refused).
template <typename F>
std::string error_if_any(F&& f) {
  try {
    f();
  } catch (const nn::Error& e) {
    return e.what();
  }
  return "";
}

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }
