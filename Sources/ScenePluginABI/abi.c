/* Header-only target: the plugin ABI (include/scenescore_plugin.h). */
