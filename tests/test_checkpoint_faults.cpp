// A process killed while it writes a checkpoint (docs/reliability.md item 12): a child saves two
// alternating generations of a 24 MiB state over one path again and again, and is SIGKILLed at
// varied moments; after every kill the path must hold one whole generation, byte for byte. Kills
// that land mid-write leave the child's temporary file behind, which proves the test is not passing
// only because every kill fell between two saves. (A full disk is covered by
// SafetensorsSave.WriteFailurePartWayLeavesPreviousFileAndRemovesTemporary.)
#include <gtest/gtest.h>
#include <nn/io/safetensors.h>
#include <nn/nn.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "scratch_dir.h"

namespace fs = std::filesystem;

namespace {

using TensorList = std::vector<std::pair<std::string, nn::Tensor>>;

// Generation g: a model tensor and two optimizer-moment tensors (2M floats each, 24 MiB in all),
// random from seed g, so the two generations differ in every tensor.
TensorList checkpoint_generation(uint64_t g) {
  nn::Generator gen(1000 + g);
  return {{"model.features.0.weight", nn::randn({2048, 1024}, gen)},
          {"optimizer.state.0.exp_avg", nn::randn({2048, 1024}, gen)},
          {"optimizer.state.0.exp_avg_sq", nn::randn({1024, 2048}, gen)}};
}

void save_generation(const std::string& path, const TensorList& tensors, int g) {
  nn::io::save_safetensors(path, tensors, {{"generation", std::to_string(g)}});
}

// The generation the file at `path` holds, after checking every byte of every tensor against it;
// -1 (with a test failure) when the file does not load or matches neither.
int generation_on_disk(const std::string& path, const std::vector<TensorList>& generations) {
  nn::io::SafetensorsFile file;
  try {
    file = nn::io::load_safetensors(path);
  } catch (const nn::Error& e) {
    ADD_FAILURE() << "the checkpoint does not load after a kill: " << e.what();
    return -1;
  }
  const int g = std::stoi(file.metadata.at("generation"));
  if (g < 0 || g >= static_cast<int>(generations.size())) {
    ADD_FAILURE() << "unknown generation " << g;
    return -1;
  }
  const TensorList& expected = generations[static_cast<size_t>(g)];
  EXPECT_EQ(file.tensors.size(), expected.size());
  for (const auto& [name, t] : expected) {
    const nn::Tensor& got = file.at(name);
    EXPECT_EQ(got.shape(), t.shape()) << name;
    if (got.shape() != t.shape()) return -1;
    if (std::memcmp(got.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()) * sizeof(float)) != 0) {
      ADD_FAILURE() << name << " differs from generation " << g << "'s bytes";
      return -1;
    }
  }
  return g;
}

// Removes the temporary files next to `path`; returns how many there were.
int remove_temporary_files(const fs::path& dir, const std::string& file_name) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().rfind(file_name + ".tmp.", 0) != 0) continue;
    fs::remove(e.path());
    ++n;
  }
  return n;
}

}  // namespace

TEST(CheckpointFaults, KillDuringSaveAlwaysLeavesOneWholeGeneration) {
  ScratchDir dir("checkpoint_kill");
  const std::string path = dir.file("checkpoint.safetensors");
  const std::vector<TensorList> generations = {checkpoint_generation(0), checkpoint_generation(1)};

  // How long one save takes here (page cache, fsync); the kill delays span 0 to twice that.
  save_generation(path, generations[1], 1);
  const auto t0 = std::chrono::steady_clock::now();
  save_generation(path, generations[0], 0);
  const double save_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(generation_on_disk(path, generations), 0);

  // Kills alternate between inside the child's first save (0.1 to 0.9 of a save after the fork)
  // and past it: once the file has been replaced (its inode changed: the child's first save was
  // renamed into place), after a further 0 to 0.9 of a save. The second kind waits for the
  // replacement itself rather than guessing it from the time one save took, so a slow moment of a
  // loaded machine cannot make every kill land before the first save completes.
  std::mt19937_64 rng(20250612);
  std::uniform_real_distribution<double> within_first_save(0.1 * save_seconds, 0.9 * save_seconds);
  std::uniform_real_distribution<double> into_next_save(0.0, 0.9 * save_seconds);
  auto inode = [&path] {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_ino : ino_t{0};
  };
  int kills = 0, mid_write = 0, completed_saves = 0, on_disk = 0;
  const auto start = std::chrono::steady_clock::now();
  auto keep_going = [&] {
    const auto elapsed = std::chrono::steady_clock::now() - start;
    if (kills >= 40 || elapsed > std::chrono::seconds(20)) return false;
    return elapsed < std::chrono::seconds(6) || kills < 8;  // at least 8 kills on a slow disk
  };
  while (keep_going()) {
    const ino_t before = inode();
    const pid_t child = ::fork();
    ASSERT_GE(child, 0) << std::strerror(errno);
    if (child == 0) {
      // Alternate, starting with the generation the file does not hold, until killed.
      for (int g = 1 - on_disk;; g = 1 - g) {
        try {
          save_generation(path, generations[static_cast<size_t>(g)], g);
        } catch (...) {
          ::_exit(3);
        }
      }
    }
    if (kills % 2 == 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(within_first_save(rng)));
    } else {
      // Until the first save is in place (a generous bound: a save failing makes the child exit,
      // which the status check below reports).
      const auto wait_start = std::chrono::steady_clock::now();
      while (inode() == before && std::chrono::steady_clock::now() - wait_start < std::chrono::seconds(60)) {
        int status = 0;
        if (::waitpid(child, &status, WNOHANG) == child) FAIL() << "the saving child ended on its own (status " << status << ")";
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      std::this_thread::sleep_for(std::chrono::duration<double>(into_next_save(rng)));
    }
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the saving child ended on its own (status " << status << "): a save failed";
    ++kills;

    const int g = generation_on_disk(path, generations);
    ASSERT_GE(g, 0) << "after kill " << kills << " (" << mid_write << " mid-write so far)";
    if (g != on_disk) ++completed_saves;
    on_disk = g;
    if (remove_temporary_files(dir.path(), "checkpoint.safetensors") > 0) ++mid_write;
  }
  // Enough kills, some of them inside a save (a temporary file was left), and some saves finished
  // between kills (the file changed generation), so both outcomes were checked.
  EXPECT_GE(kills, 8);
  EXPECT_GE(mid_write, 1) << "no kill landed during a write in " << kills << " kills";
  EXPECT_GE(completed_saves, 1) << "no save completed in " << kills << " kills";
  RecordProperty("kills", kills);
  RecordProperty("mid_write_kills", mid_write);
  std::printf("%d kills (one save %.0f ms): %d mid-write, the file changed generation %d times\n", kills,
              save_seconds * 1000, mid_write, completed_saves);
}
