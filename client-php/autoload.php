<?php

declare(strict_types=1);

// For people who do not use composer: `require 'path/to/client-php/autoload.php';`
// (or require PixlIPCClient.class.php, the original's file name).
spl_autoload_register(static function (string $class): void {
    $prefix = 'PixlIPC\\';
    if (strncmp($class, $prefix, strlen($prefix)) !== 0) {
        return;
    }
    $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    if (is_file($file)) {
        require $file;
    }
});
require_once __DIR__ . '/src/global.php';
