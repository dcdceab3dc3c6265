/* Prints a greeting, the number of arguments and each argument. Built
 * with `gcc -static`, so it runs in an image with no C library. */
#include <stdio.h>

#define GREETING "Hello from a static binary built by forge"

int main(int argc, char **argv) {
    printf("%s\n", GREETING);
    printf("arguments: %d\n", argc - 1);
    for (int i = 1; i < argc; i++) {
        printf("  %d: %s\n", i, argv[i]);
    }
    return 0;
}
